//! JupyterLab from the portal (docs/jupyter.md), end to end: `haneul up`, JupyterLab from PyPI
//! (installed on first run into a virtual environment under the cargo target directory, as the
//! schemathesis test installs its tool), and headless Chromium. The demo member starts a
//! session from the portal's form with that environment, opens it through the proxy, and the
//! lab's page runs in the browser; a cell is executed on the session's kernel through the
//! proxied HTTP API and websocket, as JupyterLab's own notebook does; the session is stopped
//! from the portal and its job ends. Another member of the same project, the centre
//! administrator and a browser without a session are all refused the session's URL, and the
//! secret token the proxy adds is in neither the job's command nor its output.

// The viewport helpers are for the layout tests.
#[allow(dead_code)]
#[path = "common/browser.rs"]
mod browser;
mod common;

use browser::{click, fill, goto, shot, text_of, wait_js, wait_text};
use headless_chrome::Tab;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The JupyterLab release the test was written against.
const JUPYTERLAB: &str = "jupyterlab==4.3.5";

fn target_dir() -> PathBuf {
    // CARGO_BIN_EXE_haneul is TARGET/release/haneul.
    Path::new(env!("CARGO_BIN_EXE_haneul"))
        .parent()
        .and_then(Path::parent)
        .expect("a target directory")
        .to_path_buf()
}

/// The Python the environment is made from. Tasks run as their owners' uids, so the
/// interpreter a virtual environment links to must be theirs to run: the system's, rather than
/// one under root's home (pyenv's), which they cannot reach.
fn python() -> PathBuf {
    let system = PathBuf::from("/usr/bin/python3");
    if system.is_file() {
        system
    } else {
        PathBuf::from("python3")
    }
}

/// A Python environment with JupyterLab: TARGET/jupyter-venv, made when missing (or when made
/// from another interpreter than [`python`]).
fn jupyter_venv() -> PathBuf {
    let venv = target_dir().join("jupyter-venv");
    let python = python();
    let home = python
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let made_from = std::fs::read_to_string(venv.join("pyvenv.cfg")).unwrap_or_default();
    if venv.join("bin/jupyter-lab").exists()
        && (home.is_empty() || made_from.contains(&format!("home = {home}\n")))
    {
        return venv;
    }
    // What an interrupted install, or one from another interpreter, left behind.
    let _ = std::fs::remove_dir_all(&venv);
    let ok = Command::new(&python)
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 (with venv) is needed for the JupyterLab test")
        .success();
    assert!(ok, "{} -m venv failed", python.display());
    let ok = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", JUPYTERLAB])
        .status()
        .expect("pip")
        .success();
    assert!(
        ok,
        "pip install {JUPYTERLAB} failed (PyPI must be reachable on first run)"
    );
    // The environment must be the tasks' to read.
    let ok = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&venv)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "chmod the environment");
    venv
}

use common::up::haneul;

/// One HTTP/1.1 request with extra headers; the status, the head and the body.
fn raw(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    // A websocket that was (wrongly) switched would not close: read what comes in time.
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// A portal session for `token`, signed in over plain HTTP: its cookie header.
fn portal_cookie(addr: &str, token: &str) -> String {
    let origin = format!("http://{addr}");
    let (status, head, _) = raw(
        addr,
        "POST",
        "/portal/signin",
        &[
            ("Origin", &origin),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &format!("token={token}"),
    );
    assert_eq!(status, 303, "sign-in: {head}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: haneul_session="))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no session cookie: {head}"));
    format!("haneul_session={cookie}")
}

fn sign_in(tab: &Tab, base: &str, token: &str) {
    goto(tab, &format!("{base}/portal/signin"));
    fill(tab, "#token", token);
    click(tab, "#signin-submit");
    text_of(tab, "#who");
}

/// Runs `print(6*7)` on a new kernel of session `id`, from the page: the kernel is started
/// with a POST through the proxy and the code sent over its websocket, as JupyterLab's
/// notebook does; the promise gives what the kernel printed.
fn execute_in_page(tab: &Tab, id: i64) -> String {
    let js = format!(
        r#"(async () => {{
  const base = '/portal/sessions/{id}';
  const r = await fetch(base + '/api/kernels', {{
    method: 'POST', headers: {{'Content-Type': 'application/json'}},
    body: JSON.stringify({{name: 'python3'}})
  }});
  if (!r.ok) return 'kernel start: ' + r.status;
  const kernel = (await r.json()).id;
  const ws = new WebSocket('ws://' + location.host + base + '/api/kernels/' + kernel + '/channels');
  return await new Promise((resolve) => {{
    const timer = setTimeout(() => resolve('no output in time'), 60000);
    ws.onerror = () => resolve('websocket error');
    ws.onopen = () => ws.send(JSON.stringify({{
      header: {{msg_id: 'm1', username: 'test', session: 's1', msg_type: 'execute_request', version: '5.3', date: ''}},
      parent_header: {{}}, metadata: {{}}, channel: 'shell', buffers: [],
      content: {{code: 'print(6*7)', silent: false, store_history: false, user_expressions: {{}}, allow_stdin: false}}
    }}));
    ws.onmessage = (e) => {{
      const m = JSON.parse(e.data);
      if (m.msg_type === 'stream' && m.parent_header.msg_id === 'm1') {{
        clearTimeout(timer); ws.close(); resolve('out:' + m.content.text);
      }}
    }};
  }});
}})()"#
    );
    tab.evaluate(&js, true)
        .expect("run the cell")
        .value
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn job_state(config: &Path, token: &Path, id: i64) -> String {
    let j = haneul(config, token, &["show", &id.to_string()]);
    j["job"]["state"]
        .as_str()
        .or_else(|| j["state"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn jupyterlab_from_the_portal() {
    let started = Instant::now();
    browser::chromium();
    let venv = jupyter_venv();
    eprintln!("jupyterlab ready after {:?}", started.elapsed());
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).with_file_name("portal-shots");
    std::fs::create_dir_all(&shots).unwrap();
    let dir = common::tempdir();
    let (_up, config, data) = common::up::start_up(dir.path(), "2xH200", &[]);
    let server: toml::Value = toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let base = server["server"].as_str().unwrap().to_string();
    let addr = base.trim_start_matches("http://").to_string();
    let member_file = data.join("user.token");
    let admin_file = data.join("server/admin.token");
    let member = common::up::token(&member_file);
    let admin = common::up::token(&admin_file);

    // A second member of the demo project: a colleague, who still may not enter the session.
    let me = haneul(&config, &member_file, &["whoami"]);
    let project = me["projects"][0].as_i64().unwrap().to_string();
    let colleague = haneul(
        &config,
        &admin_file,
        &[
            "user",
            "create",
            "--name",
            "colleague",
            "--role",
            "member",
            "--org",
            "1",
            "--project",
            &project,
        ],
    );
    let colleague_file = dir.path().join("colleague.token");
    haneul(
        &config,
        &admin_file,
        &[
            "token",
            "create",
            "--user",
            &colleague["id"].as_i64().unwrap().to_string(),
            "--out",
            colleague_file.to_str().unwrap(),
        ],
    );
    let colleague = std::fs::read_to_string(&colleague_file)
        .unwrap()
        .trim()
        .to_string();

    let (_browser, tab) = browser::launch(1280, 900);
    sign_in(&tab, &base, &member);

    // A bad field comes back named, with what was typed kept.
    goto(&tab, &format!("{base}/portal/sessions"));
    fill(&tab, "#hours", "soon");
    click(&tab, "#start-lab");
    wait_text(&tab, "#start-error", "hours");
    let kept = wait_js(
        &tab,
        "document.querySelector('#hours').value",
        "kept hours",
        Value::is_string,
    );
    assert_eq!(kept, "soon");

    // Start: 1 GPU for an hour, with the environment JupyterLab was installed into.
    fill(&tab, "#hours", "1");
    fill(&tab, "#gpus", "1");
    fill(&tab, "#environment", venv.to_str().unwrap());
    click(&tab, "#start-lab");
    let id = wait_js(
        &tab,
        "(() => { const r = document.querySelector('#sessions tbody tr'); return r ? r.id : ('NOROW ' + location.href + ' ' + document.body.innerText.slice(0, 600)) })()",
        "the session in the list",
        |v| v.as_str().is_some_and(|s| !s.starts_with("NOROW")),
    );
    let id: i64 = id
        .as_str()
        .unwrap()
        .trim_start_matches("session-")
        .parse()
        .unwrap();
    let job = haneul(&config, &member_file, &["show", &id.to_string()]);
    let job = if job["job"].is_object() {
        &job["job"]
    } else {
        &job
    };
    assert_eq!(job["name"], "jupyter-lab");
    assert_eq!(job["gpus_per_task"], 1);
    assert_eq!(job["time_limit_s"], 3600);

    // The list is a plain page: reload it until the session's server has said where it listens.
    let until = Instant::now() + Duration::from_secs(180);
    loop {
        let state = job_state(&config, &member_file, id);
        let ended = ["failed", "cancelled", "succeeded", "timed_out"].contains(&state.as_str());
        goto(&tab, &format!("{base}/portal/sessions"));
        let open = tab
            .evaluate(&format!("!!document.querySelector('#open-{id}')"), false)
            .ok()
            .and_then(|r| r.value);
        if open == Some(Value::Bool(true)) {
            break;
        }
        assert!(
            Instant::now() < until && !ended,
            "session {id} never became ready; state {state}; output: {}",
            String::from_utf8_lossy(
                &Command::new(env!("CARGO_BIN_EXE_haneul"))
                    .args(["logs", &id.to_string()])
                    .env("HANEUL_CONFIG", &config)
                    .env("HANEUL_TOKEN_FILE", &member_file)
                    .output()
                    .unwrap()
                    .stdout
            )
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let row = text_of(&tab, &format!("#session-{id}"));
    assert!(row.contains("running"), "{row}");
    assert!(
        row.contains("0:5") || row.contains("1:00"),
        "an hour's time left: {row}"
    );
    shot(&tab, &shots, "sessions");

    // Open: JupyterLab's own page, through the proxy, with its scripts running (the portal's
    // strict policy would have blocked them).
    click(&tab, &format!("#open-{id}"));
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let shell = tab
            .evaluate(
                "!!document.querySelector('#jp-main-dock-panel, .jp-LabShell')",
                false,
            )
            .ok()
            .and_then(|r| r.value);
        if shell == Some(Value::Bool(true)) {
            break;
        }
        assert!(Instant::now() < until, "the lab's page never drew itself");
        std::thread::sleep(Duration::from_millis(500));
    }
    let url = tab.get_url();
    assert!(
        url.starts_with(&format!("{base}/portal/sessions/{id}/lab")),
        "{url}"
    );
    assert!(
        !url.contains("token"),
        "the token stays out of the address: {url}"
    );
    std::thread::sleep(Duration::from_secs(2));
    shot(&tab, &shots, "jupyterlab");

    // A cell on a kernel of the session, over the proxied API and websocket.
    let out = execute_in_page(&tab, id);
    assert_eq!(out.trim_end(), "out:42", "what the kernel printed");

    // The token the proxy adds is the task's secret: not in the job, not in its output.
    let endpoint = std::fs::read_to_string(
        data.join(format!("work/job-{id}/attempt-1/task-0/.haneul-endpoint")),
    )
    .or_else(|_| {
        // Wherever `haneul up` keeps its agent's work: find the file.
        let out = Command::new("find")
            .arg(&data)
            .args(["-name", ".haneul-endpoint", "-path", &format!("*job-{id}*")])
            .output()
            .unwrap();
        let path = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        std::fs::read_to_string(path)
    })
    .expect("the session's endpoint file");
    let token = endpoint.split_whitespace().nth(1).unwrap().to_string();
    assert!(token.len() >= 32, "{endpoint:?}");
    let shown = haneul(&config, &member_file, &["show", &id.to_string()]).to_string();
    assert!(!shown.contains(&token), "the token is in the job");
    let logs = Command::new(env!("CARGO_BIN_EXE_haneul"))
        .args(["logs", &id.to_string()])
        .env("HANEUL_CONFIG", &config)
        .env("HANEUL_TOKEN_FILE", &member_file)
        .output()
        .unwrap();
    let logs =
        String::from_utf8_lossy(&logs.stdout).into_owned() + &String::from_utf8_lossy(&logs.stderr);
    assert!(logs.contains("Jupyter"), "the session's log: {logs}");
    assert!(!logs.contains(&token), "the token is in the output");

    // Nobody else gets in: a colleague of the same project, the centre administrator, a
    // browser without a session; neither the page nor the kernel's websocket.
    let lab = format!("/portal/sessions/{id}/lab");
    let channels = format!("/portal/sessions/{id}/api/kernels");
    for (who, token) in [("colleague", &colleague), ("centre admin", &admin)] {
        let cookie = portal_cookie(&addr, token);
        let (status, head, body) = raw(&addr, "GET", &lab, &[("Cookie", &cookie)], "");
        assert_eq!(status, 404, "{who} opened the session: {head}");
        assert!(
            !body.contains("jupyter-config-data"),
            "{who} saw the lab's page"
        );
        let (status, head, _) = raw(
            &addr,
            "GET",
            &format!("{channels}/x/channels"),
            &[
                ("Cookie", &cookie),
                ("Connection", "Upgrade"),
                ("Upgrade", "websocket"),
                ("Sec-WebSocket-Version", "13"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ],
            "",
        );
        assert_eq!(status, 404, "{who} reached the kernels' websocket: {head}");
        let (status, _, body) = raw(&addr, "GET", &channels, &[("Cookie", &cookie)], "");
        assert_eq!(status, 404, "{who} listed the kernels: {body}");
    }
    let (status, head, _) = raw(&addr, "GET", &lab, &[], "");
    assert_eq!(status, 303, "no session: {head}");
    assert!(head.contains("location: /portal/signin"), "{head}");
    // The owner's own cookie through the same client works: the refusals above are about who.
    let mine = portal_cookie(&addr, &member);
    let (status, _, body) = raw(&addr, "GET", &channels, &[("Cookie", &mine)], "");
    assert_eq!(status, 200, "the owner's kernels: {body}");
    assert!(body.contains("python3"), "{body}");
    // Writes other than POST carry the Origin check too.
    let (status, _, _) = raw(
        &addr,
        "DELETE",
        &format!("{channels}/x"),
        &[("Cookie", &mine), ("Origin", "http://elsewhere.example")],
        "",
    );
    assert_eq!(status, 403, "a cross-site DELETE");

    // Stop from the portal, confirmed with a reason; the job ends and the URL says so.
    goto(&tab, &format!("{base}/portal/sessions"));
    click(&tab, &format!("#stop-{id}"));
    wait_text(&tab, "#confirm-consequence", "GPUs");
    fill(&tab, "#reason", "done for today");
    click(&tab, "#confirm");
    wait_js(
        &tab,
        "location.pathname",
        "back on the sessions page",
        |v| v == "/portal/sessions",
    );
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let state = job_state(&config, &member_file, id);
        if state == "cancelled" {
            break;
        }
        assert!(
            Instant::now() < until,
            "job {id} still {state} after the stop"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    goto(&tab, &format!("{base}/portal/sessions"));
    wait_text(&tab, "main", "You have no JupyterLab session");
    let (status, _, body) = raw(&addr, "GET", &lab, &[("Cookie", &mine)], "");
    assert_eq!(status, 410, "{body}");
    assert!(body.contains("This session has ended"), "{body}");

    // The page fits a phone: no sideways scrolling.
    tab.call_method(browser::phone_viewport())
        .expect("phone viewport");
    goto(&tab, &format!("{base}/portal/sessions"));
    let fits = wait_js(
        &tab,
        "document.documentElement.scrollWidth",
        "the page's width",
        Value::is_number,
    );
    assert!(
        fits.as_u64().unwrap() <= 390,
        "the sessions page is {fits} px wide on a phone"
    );
    browser::desktop(&tab);

    // Korean: every string of the page has its translation.
    goto(
        &tab,
        &format!("{base}/portal/lang/ko?back=/portal/sessions"),
    );
    wait_text(&tab, "h1", "JupyterLab 시작");
    wait_text(&tab, "main", "JupyterLab 세션이 없습니다");
    eprintln!("jupyter test took {:?}", started.elapsed());
}
