//! The CLI's message catalogue, in English and Korean: every message the CLI writes itself
//! (`--help` in Korean is [`crate::help_ko`]). `LC_ALL`, `LC_MESSAGES` or `LANG` (the first one set,
//! as POSIX orders them) starting with `ko` chooses Korean; anything else is English. Under Korean
//! the CLI asks the server for Korean too (`Accept-Language: ko`), and shows the server's state
//! words (`running`, `draining`) in Korean ([`word`]); JSON output keeps the wire's words.
//!
//! A message is a key with both texts side by side, so a new message cannot be added in one
//! language only; placeholders are `{name}` and must be the same in both (a test checks).

use std::fmt::Display;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Ko,
}

/// The language the environment asks for.
pub fn lang_from_env(get: impl Fn(&str) -> Option<String>) -> Lang {
    for var in ["LC_ALL", "LC_MESSAGES", "LANG"] {
        if let Some(v) = get(var).filter(|v| !v.is_empty()) {
            return if v.to_ascii_lowercase().starts_with("ko") {
                Lang::Ko
            } else {
                Lang::En
            };
        }
    }
    Lang::En
}

pub fn lang() -> Lang {
    static LANG: OnceLock<Lang> = OnceLock::new();
    *LANG.get_or_init(|| lang_from_env(|v| std::env::var(v).ok()))
}

macro_rules! catalogue {
    ($($key:ident { en: $en:literal, ko: $ko:literal })*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum M { $($key),* }
        impl M {
            #[cfg(test)]
            pub const ALL: &'static [M] = &[$(M::$key),*];
            pub fn text_in(self, lang: Lang) -> &'static str {
                let (en, ko) = match self { $(M::$key => ($en, $ko)),* };
                match lang {
                    Lang::Ko if !ko.is_empty() => ko,
                    _ => en,
                }
            }
        }
    };
}

catalogue! {
    ErrorPrefix { en: "error", ko: "오류" }
    CannotReadFile { en: "cannot read {path}", ko: "{path} 파일을 읽을 수 없습니다" }
    BadJobFile {
        en: "job file {path}: {error}; the keys are name, gpus, nodes, gpus_per_node, cpus_per_task, gpu_model, time, priority, dependency, array, project, command",
        ko: "작업 파일 {path}: {error}; 쓸 수 있는 키는 name, gpus, nodes, gpus_per_node, cpus_per_task, gpu_model, time, priority, dependency, array, project, command 입니다"
    }
    BadTime {
        en: "--time: expected e.g. 90s, 10m, 2h, 1d or 1:30:00, got `{value}`",
        ko: "--time: 90s, 10m, 2h, 1d, 1:30:00 같은 값을 주세요 (받은 값: `{value}`)"
    }
    BadDependency {
        en: "--dependency: expected afterok:ID[:ID...] or afterany:ID[:ID...] (several joined by commas), got `{value}`",
        ko: "--dependency: afterok:ID[:ID...] 또는 afterany:ID[:ID...] 형식이어야 합니다 (여러 개는 쉼표로 구분, 받은 값: `{value}`)"
    }
    BadArray {
        en: "--array: expected e.g. 0-9, 1,3,5, 0-15:4 or 0-9%2 (at most 10000 tasks), got `{value}`",
        ko: "--array: 0-9, 1,3,5, 0-15:4, 0-9%2 같은 값을 주세요 (최대 10000개, 받은 값: `{value}`)"
    }
    BadCpus {
        en: "--cpus-per-task: give a number of cores above 0, not `{value}`",
        ko: "--cpus-per-task: 0 보다 큰 코어 수를 주세요 (받은 값: `{value}`)"
    }
    NodesZero { en: "--nodes must be at least 1", ko: "--nodes 는 1 이상이어야 합니다" }
    GpusMismatch {
        en: "--gpus {gpus} is not --gpus-per-node {per} times --nodes {nodes}; give one of --gpus or --gpus-per-node",
        ko: "--gpus {gpus} 가 --gpus-per-node {per} × --nodes {nodes} 와 다릅니다; --gpus 와 --gpus-per-node 중 하나만 주세요"
    }
    GpusUneven {
        en: "--gpus {gpus} cannot be split evenly across --nodes {nodes}; give a multiple of the node count or use --gpus-per-node",
        ko: "--gpus {gpus} 를 --nodes {nodes} 개 노드에 똑같이 나눌 수 없습니다; 노드 수의 배수를 주거나 --gpus-per-node 를 쓰세요"
    }
    NoCommand {
        en: "no command: give it after `--` (haneul submit --gpus 1 -- python train.py) or as `command` in a job file",
        ko: "실행할 명령이 없습니다: `--` 뒤에 주거나 (haneul submit --gpus 1 -- python train.py) 작업 파일의 `command` 에 적으세요"
    }
    BadPriority {
        en: "--priority: use low, normal, high or urgent, not `{value}`",
        ko: "--priority: low, normal, high, urgent 중 하나를 쓰세요 (받은 값: `{value}`)"
    }
    FileTwice {
        en: "give the job file once: either `haneul submit FILE` or --file FILE",
        ko: "작업 파일은 한 번만 주세요: `haneul submit FILE` 또는 --file FILE"
    }
    NoServer {
        en: "no server given and no config at {path}; run `haneul up` or pass --server http://HOST:PORT",
        ko: "서버가 지정되지 않았고 {path} 설정 파일도 없습니다; `haneul up` 을 실행하거나 --server http://HOST:PORT 를 주세요"
    }
    NoToken {
        en: "no token: pass --token-file PATH or set HANEUL_TOKEN (or run `haneul up`)",
        ko: "토큰이 없습니다: --token-file PATH 를 주거나 HANEUL_TOKEN 을 설정하세요 (또는 `haneul up` 을 실행하세요)"
    }
    CannotReadToken {
        en: "cannot read the token file {path}; check the path or pass --token-file",
        ko: "토큰 파일 {path} 을 읽을 수 없습니다; 경로를 확인하거나 --token-file 을 주세요"
    }
    BadConfig {
        en: "config {path}: {error}; the keys are server, token_file, project and ca_file",
        ko: "설정 파일 {path}: {error}; 쓸 수 있는 키는 server, token_file, project, ca_file 입니다"
    }
    Unreachable {
        en: "cannot reach the server at {server}: {error}; is `haneul up` (or `haneul server`) running?",
        ko: "{server} 서버에 연결할 수 없습니다: {error}; `haneul up` (또는 `haneul server`) 이 실행 중인지 확인하세요"
    }
    HintToken {
        en: "check your token: --token-file, HANEUL_TOKEN or the config from `haneul up`",
        ko: "토큰을 확인하세요: --token-file, HANEUL_TOKEN, 또는 `haneul up` 이 쓴 설정"
    }
    HintJob { en: "`haneul queue` lists the jobs you can see", ko: "`haneul queue` 로 볼 수 있는 작업 목록을 확인하세요" }
    HintForbidden {
        en: "your role may not do this; `haneul whoami` shows your role, and an operator's token is passed with --token-file",
        ko: "현재 역할로는 할 수 없는 작업입니다; `haneul whoami` 로 역할을 확인하고, 운영자 토큰은 --token-file 로 주세요"
    }
    NoProjectMember {
        en: "you are in no project; ask your organisation's admin to add you",
        ko: "속한 프로젝트가 없습니다; 소속 기관 관리자에게 추가를 요청하세요"
    }
    SeveralProjects {
        en: "you are in several projects ({ids}); choose one with --project ID",
        ko: "여러 프로젝트에 속해 있습니다 ({ids}); --project ID 로 하나를 고르세요"
    }
    BadQuota {
        en: "--quota: expected MODEL=GPUS[:BORROW_LIMIT], e.g. H200=8 or H200=8:16, got `{value}`",
        ko: "--quota: MODEL=GPUS[:BORROW_LIMIT] 형식이어야 합니다 (예: H200=8, H200=8:16, 받은 값: `{value}`)"
    }
    AuditBroken {
        en: "the audit chain is broken: {error}",
        ko: "감사 로그 해시 체인이 손상되었습니다: {error}"
    }
    AuditIntact { en: "audit chain intact: {entries} entries", ko: "감사 로그 해시 체인 정상: {entries}개 항목" }
    TokenShownOnce {
        en: "token {id} for user {user} (shown once; store it now):",
        ko: "사용자 {user} 의 토큰 {id} (한 번만 표시됩니다; 지금 저장하세요):"
    }
    Exhausted {
        en: "{message}; `haneul usage` shows what is left on each award",
        ko: "{message}; `haneul usage` 로 과제별 남은 GPU 시간을 확인하세요"
    }
    // `haneul up`.
    UpServerStopped {
        en: "the server stopped at start; see {log} (is {listen} already in use? try --listen 127.0.0.1:OTHER_PORT)",
        ko: "서버가 시작하자마자 멈췄습니다; {log} 를 보세요 ({listen} 이 이미 사용 중인가요? --listen 127.0.0.1:다른_포트 를 써 보세요)"
    }
    UpNoHealthz {
        en: "the server did not answer /healthz within 30 s; see {log}",
        ko: "서버가 30초 안에 /healthz 에 응답하지 않았습니다; {log} 를 보세요"
    }
    UpChildStoppedAtStart {
        en: "the {who} stopped at start; see {log}",
        ko: "{who} 가 시작하자마자 멈췄습니다; {log} 를 보세요"
    }
    UpNodeNotUp {
        en: "the agent's node did not come up within 30 s; see {log}",
        ko: "에이전트의 노드가 30초 안에 올라오지 않았습니다; {log} 를 보세요"
    }
    UpChildStopped {
        en: "the {who} stopped; see {log}",
        ko: "{who} 가 멈췄습니다; {log} 를 보세요"
    }
    UpReusing { en: "reusing the demo centre in {dir}", ko: "{dir} 의 데모 센터를 다시 씁니다" }
    UpCreated {
        en: "created organisation `demo`, project `demo` and user `demo`",
        ko: "기관 `demo`, 프로젝트 `demo`, 사용자 `demo` 를 만들었습니다"
    }
    UpSimulatingAsked {
        en: "simulating {gpus} GPUs as asked (the machine's real GPUs are not used)",
        ko: "요청대로 GPU {gpus} 를 시뮬레이션합니다 (이 머신의 실제 GPU 는 쓰지 않습니다)"
    }
    UpSimulatingNoGpu {
        en: "no nvidia-smi on this machine: SIMULATING {gpus} GPUs (tasks get CUDA_VISIBLE_DEVICES but no real GPU)",
        ko: "이 머신에 nvidia-smi 가 없습니다: GPU {gpus} 를 시뮬레이션합니다 (작업은 CUDA_VISIBLE_DEVICES 를 받지만 실제 GPU 는 없습니다)"
    }
    UpRealGpus { en: "using this machine's GPUs (nvidia-smi)", ko: "이 머신의 GPU 를 씁니다 (nvidia-smi)" }
    UpBanner {
        en: "haneul is up
  API and portal:  {url}  (API docs at {url}/docs)
  your token file: {token}
  client config:   {config}
  logs:            {dir}/{server,agent}.log
try:  haneul submit --gpus 1 -- sh -c 'echo hello $CUDA_VISIBLE_DEVICES'   then   haneul queue
Ctrl-C stops everything; running `haneul up` again reuses {dir}",
        ko: "haneul 이 실행 중입니다
  API 와 포털:     {url}  (API 문서: {url}/docs)
  토큰 파일:       {token}
  클라이언트 설정: {config}
  로그:            {dir}/{server,agent}.log
해 보기:  haneul submit --gpus 1 -- sh -c 'echo hello $CUDA_VISIBLE_DEVICES'   그 다음   haneul queue
Ctrl-C 로 모두 멈춥니다; `haneul up` 을 다시 실행하면 {dir} 를 다시 씁니다"
    }
    UpStopping { en: "stopping", ko: "멈추는 중" }
}

/// A message being filled in.
pub struct Text {
    template: &'static str,
    args: Vec<(&'static str, String)>,
}

pub fn t(key: M) -> Text {
    Text {
        template: key.text_in(lang()),
        args: Vec::new(),
    }
}

impl Text {
    pub fn arg(mut self, name: &'static str, value: impl Display) -> Text {
        self.args.push((name, value.to_string()));
        self
    }
    pub fn text(&self) -> String {
        let mut out = self.template.to_string();
        for (name, value) in &self.args {
            out = out.replace(&format!("{{{name}}}"), value);
        }
        out
    }
}

impl Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

/// A state or reason word from the server (`running`, `draining`, `node_lost`, ...) in the
/// user's language; any other text (a free-text reason, a tenant's name) is shown as it is,
/// made safe for the terminal.
pub fn word(text: &str) -> String {
    word_in(text, lang())
}

pub fn word_in(text: &str, lang: Lang) -> String {
    use haneul_api::i18n::{reason_korean, word_korean};
    match lang {
        Lang::Ko => match word_korean(text) {
            Some(ko) => ko.to_string(),
            None => crate::output::shown(&reason_korean(text).unwrap_or_else(|| text.into())),
        },
        Lang::En => crate::output::shown(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn placeholders(s: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut rest = s;
        while let Some(i) = rest.find('{') {
            let Some(j) = rest[i..].find('}') else { break };
            out.insert(rest[i + 1..i + j].to_string());
            rest = &rest[i + j + 1..];
        }
        out
    }

    #[test]
    fn every_message_has_both_languages_with_the_same_placeholders() {
        for &m in M::ALL {
            let en = m.text_in(Lang::En);
            let ko = m.text_in(Lang::Ko);
            assert!(!en.is_empty(), "{m:?} has no English");
            assert_ne!(en, ko, "{m:?} has no Korean (it falls back to English)");
            assert!(
                ko.chars().any(|c| ('\u{AC00}'..='\u{D7A3}').contains(&c)),
                "{m:?}: the Korean text holds no Hangul: {ko}"
            );
            assert_eq!(placeholders(en), placeholders(ko), "{m:?}");
            assert!(
                !en.ends_with('.') && !ko.ends_with('.'),
                "{m:?} ends with a period"
            );
        }
    }

    #[test]
    fn language_from_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(lang_from_env(env(&[("LANG", "ko_KR.UTF-8")])), Lang::Ko);
        assert_eq!(lang_from_env(env(&[("LANG", "en_US.UTF-8")])), Lang::En);
        assert_eq!(lang_from_env(env(&[])), Lang::En);
        // LC_ALL wins over LANG; an empty variable is skipped.
        assert_eq!(
            lang_from_env(env(&[("LC_ALL", "C"), ("LANG", "ko_KR.UTF-8")])),
            Lang::En
        );
        assert_eq!(
            lang_from_env(env(&[("LC_ALL", ""), ("LC_MESSAGES", "ko"), ("LANG", "C")])),
            Lang::Ko
        );
    }

    #[test]
    fn state_words_in_korean_and_other_text_kept() {
        assert_eq!(word_in("running", Lang::Ko), "실행 중");
        assert_eq!(word_in("running", Lang::En), "running");
        assert_eq!(word_in("node_lost", Lang::Ko), "노드 유실");
        // A hold reason the server wrote reads back in Korean.
        let held = "held: project `llm` has no award; apply to a call or ask the centre for one";
        assert!(word_in(held, Lang::Ko).starts_with("보류: 프로젝트 `llm` "));
        assert_eq!(word_in(held, Lang::En), held);
        // A free-text reason is kept, and kept harmless in a terminal.
        assert_eq!(
            word_in("disk \x1b[2J full", Lang::Ko),
            "disk \\u{1b}[2J full"
        );
    }

    #[test]
    fn placeholders_are_filled() {
        let s = Text {
            template: M::BadTime.text_in(Lang::En),
            args: vec![("value", "5w".into())],
        };
        assert!(s.text().contains("`5w`"));
    }
}
