//! `haneul-full`: every command (the server, the agent, the simulator, the benches and the
//! client commands). `haneul` runs it for whatever it does not carry itself.

/// jemalloc serves every allocation of the process, SQLite's included. glibc's malloc, even held
/// to one arena, left the server's heap full of holes between long-lived blocks (the queue's
/// index nodes, held connections' buffers) and the backlog's freed requests, and serialised the
/// threads on the arena's lock; jemalloc keeps objects of a size together and hands freed pages
/// back (docs/benchmarks.md, "jemalloc and smaller read caches": a peak 9-11 MiB lower at the
/// same speed).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// One arena: the server's threads are few (the runtime's workers, SQLite's) and each keeps a
/// thread cache, so more arenas would add memory and little speed. Freed pages go back to the
/// system at once rather than after a delay, so the peak follows what is held, not what was
/// freed lately. `MALLOC_CONF` in the environment is read after this and wins.
#[unsafe(export_name = "malloc_conf")]
static JEMALLOC_CONF: &u8 = &b"narenas:1,dirty_decay_ms:0,muzzy_decay_ms:0\0"[0];

fn main() -> std::process::ExitCode {
    haneul_cli::main()
}
