//! The portal's two languages: every visible string as a field of [`Texts`], so a template
//! that names a missing string does not compile, and the Korean table cannot lack a key.

/// A page's language: the `haneul_lang` cookie (the switch), else the browser's
/// `Accept-Language`, else English.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Ko,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ko => "ko",
        }
    }

    pub fn parse(code: &str) -> Option<Lang> {
        match code {
            "en" => Some(Lang::En),
            "ko" => Some(Lang::Ko),
            _ => None,
        }
    }

    pub fn texts(self) -> &'static Texts {
        match self {
            Lang::En => &EN,
            Lang::Ko => &KO,
        }
    }

    /// The other language, which the switch offers.
    pub fn other(self) -> Lang {
        match self {
            Lang::En => Lang::Ko,
            Lang::Ko => Lang::En,
        }
    }

    /// Picks by `Accept-Language` quality values; ties go to the earlier entry, and a
    /// header that names neither language gives English.
    pub fn from_accept_language(header: &str) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for item in header.split(',') {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .find_map(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|v| v.parse::<f32>().ok())
                })
                .unwrap_or(1.0);
            let lang = if tag == "ko" || tag.starts_with("ko-") {
                Lang::Ko
            } else if tag == "en" || tag.starts_with("en-") {
                Lang::En
            } else {
                continue;
            };
            if best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        best.map(|(_, l)| l).unwrap_or(Lang::En)
    }
}

/// Every string the portal shows.
pub struct Texts {
    /// The language of this table, for the words that come from the API ([`Texts::word`]).
    pub lang: Lang,
    pub title: &'static str,
    pub switch_to: &'static str,
    pub sign_in: &'static str,
    pub sign_out: &'static str,
    pub token: &'static str,
    pub token_help: &'static str,
    pub bad_token: &'static str,
    pub nav_home: &'static str,
    pub nav_jobs: &'static str,
    pub nav_fleet: &'static str,
    pub nav_audit: &'static str,
    pub signed_in_as: &'static str,
    pub projects: &'static str,
    pub project: &'static str,
    pub quotas: &'static str,
    pub usage: &'static str,
    pub gpu_model: &'static str,
    pub gpu_hours: &'static str,
    pub used_hours: &'static str,
    pub balances: &'static str,
    pub award: &'static str,
    pub granted_hours: &'static str,
    pub left_hours: &'static str,
    pub valid_until: &'static str,
    pub used_of_granted: &'static str,
    pub state_pending: &'static str,
    pub state_active: &'static str,
    pub state_warning: &'static str,
    pub state_spent: &'static str,
    pub state_expired: &'static str,
    pub none_yet: &'static str,
    pub submit_job: &'static str,
    pub job_name: &'static str,
    pub gpus_per_node: &'static str,
    pub nodes: &'static str,
    pub node_list: &'static str,
    pub time_limit_min: &'static str,
    pub command: &'static str,
    pub command_help: &'static str,
    pub gpu_models_field: &'static str,
    pub gpu_models_help: &'static str,
    pub cpus_per_task: &'static str,
    pub memory_gib_per_task: &'static str,
    pub share_by_gpus_help: &'static str,
    pub priority: &'static str,
    pub priority_default: &'static str,
    pub container_image: &'static str,
    pub dependency: &'static str,
    pub dependency_help: &'static str,
    pub submit_again: &'static str,
    pub submit: &'static str,
    pub jobs: &'static str,
    pub job: &'static str,
    pub state: &'static str,
    pub gpus: &'static str,
    pub submitted: &'static str,
    pub started: &'static str,
    pub ended_at: &'static str,
    pub elapsed: &'static str,
    pub submitter: &'static str,
    pub gpu_hours_charged: &'static str,
    pub exit_code: &'static str,
    pub reason: &'static str,
    pub attempts: &'static str,
    pub logs: &'static str,
    pub cancel: &'static str,
    pub fleet: &'static str,
    pub pool: &'static str,
    pub total: &'static str,
    pub allocated: &'static str,
    pub idle: &'static str,
    pub draining: &'static str,
    pub down: &'static str,
    pub queue_by_project: &'static str,
    pub queued: &'static str,
    pub running: &'static str,
    pub node: &'static str,
    pub actions: &'static str,
    pub drain: &'static str,
    pub resume: &'static str,
    pub usage_by_org: &'static str,
    pub audit: &'static str,
    pub actor: &'static str,
    pub action: &'static str,
    pub target: &'static str,
    pub detail: &'static str,
    pub time: &'static str,
    pub filter: &'static str,
    pub not_found: &'static str,
    pub not_found_help: &'static str,
    pub forbidden: &'static str,
    pub refused: &'static str,
    // Programmes, applications and statements (portal/programmes.rs).
    pub nav_calls: &'static str,
    pub nav_statements: &'static str,
    pub calls: &'static str,
    pub call: &'static str,
    pub programme: &'static str,
    pub call_name: &'static str,
    pub capacity_gpus: &'static str,
    pub create_call: &'static str,
    pub create: &'static str,
    pub tracks: &'static str,
    pub track: &'static str,
    pub track_name: &'static str,
    pub optional: &'static str,
    pub min_gpus: &'static str,
    pub max_gpus: &'static str,
    pub max_days: &'static str,
    pub whole_server: &'static str,
    pub server_gpus: &'static str,
    pub per_org_cap: &'static str,
    pub preferred_region: &'static str,
    pub open_call: &'static str,
    pub close_call: &'static str,
    pub state_open: &'static str,
    pub state_closed: &'static str,
    pub state_call_awarded: &'static str,
    pub state_submitted: &'static str,
    pub state_app_awarded: &'static str,
    pub state_declined: &'static str,
    pub applications: &'static str,
    pub application: &'static str,
    pub your_applications: &'static str,
    pub apply: &'static str,
    pub apply_submit: &'static str,
    pub days: &'static str,
    pub region: &'static str,
    pub region_help: &'static str,
    pub plan: &'static str,
    pub gpu_hours_help: &'static str,
    pub who_applies: &'static str,
    pub scores: &'static str,
    pub mean_score: &'static str,
    pub reviewer: &'static str,
    pub score: &'static str,
    pub comment: &'static str,
    pub record_score: &'static str,
    pub award_call: &'static str,
    pub award_call_help: &'static str,
    pub outcome: &'static str,
    pub awarded_list: &'static str,
    pub declined_list: &'static str,
    pub statements: &'static str,
    pub month: &'static str,
    pub all_projects: &'static str,
    pub show: &'static str,
    pub download_csv: &'static str,
    pub charged_hours: &'static str,
    pub refunded_hours: &'static str,
    pub credited_hours: &'static str,
    pub ledger_rows: &'static str,
    pub org: &'static str,
    // --- usage over time, fleet shares and job paging (portal-usage) ---
    pub usage_over_time_org: &'static str,
    pub usage_over_time_project: &'static str,
    pub day_utc: &'static str,
    pub organisation: &'static str,
    pub chart_figures: &'static str,
    pub allocated_share: &'static str,
    pub older: &'static str,
    pub newer: &'static str,
    pub job_pages: &'static str,
}

pub const EN: Texts = Texts {
    lang: Lang::En,
    title: "Haneul GPU centre",
    switch_to: "한국어",
    sign_in: "Sign in",
    sign_out: "Sign out",
    token: "Access token",
    token_help: "Paste the token you were given (it starts with hn_). `haneul up` writes one to DIR/user.token.",
    bad_token: "This token is not valid, or it was revoked.",
    nav_home: "Home",
    nav_jobs: "Jobs",
    nav_fleet: "Fleet",
    nav_audit: "Audit log",
    signed_in_as: "Signed in as",
    projects: "Your projects",
    project: "Project",
    quotas: "Guaranteed GPUs",
    usage: "Usage",
    gpu_model: "GPU model",
    gpu_hours: "GPU-hours",
    used_hours: "Used GPU-hours",
    balances: "Award balances",
    award: "Award",
    granted_hours: "Granted GPU-hours",
    left_hours: "GPU-hours left",
    valid_until: "Valid until",
    used_of_granted: "GPU-hours used of granted",
    state_pending: "Not yet valid",
    state_active: "Active",
    state_warning: "Running low",
    state_spent: "Spent",
    state_expired: "Expired",
    none_yet: "None yet.",
    submit_job: "Submit a job",
    job_name: "Job name",
    gpus_per_node: "GPUs per node",
    nodes: "Nodes",
    node_list: "Nodes",
    time_limit_min: "Time limit (minutes)",
    command: "Command",
    command_help: "Run by sh -c on each node.",
    gpu_models_field: "GPU models",
    gpu_models_help: "Comma-separated, for example H200,B200; empty is any model.",
    cpus_per_task: "CPU cores per task",
    memory_gib_per_task: "Memory per task (GiB)",
    share_by_gpus_help: "Empty: the node's share by GPUs.",
    priority: "Priority",
    priority_default: "Project default",
    container_image: "Container image",
    dependency: "Dependency",
    dependency_help: "As Slurm's: afterok:12 or afterany:12:13.",
    submit_again: "Submit again",
    submit: "Submit",
    jobs: "Jobs",
    job: "Job",
    state: "State",
    gpus: "GPUs",
    submitted: "Submitted",
    started: "Started",
    ended_at: "Ended",
    elapsed: "Elapsed",
    submitter: "Submitted by",
    gpu_hours_charged: "GPU-hours charged",
    exit_code: "Exit code",
    reason: "Reason",
    attempts: "Attempts",
    logs: "Output",
    cancel: "Cancel job",
    fleet: "Fleet",
    pool: "Pool",
    total: "Total",
    allocated: "Allocated",
    idle: "Idle",
    draining: "Draining",
    down: "Down",
    queue_by_project: "Queue by project",
    queued: "Queued",
    running: "Running",
    node: "Node",
    actions: "Actions",
    drain: "Drain",
    resume: "Resume",
    usage_by_org: "GPU-hours by organisation",
    audit: "Audit log",
    actor: "Actor",
    action: "Action",
    target: "Target",
    detail: "Detail",
    time: "Time (UTC)",
    filter: "Filter",
    not_found: "Not found",
    not_found_help: "There is nothing here that you may see.",
    forbidden: "Not allowed",
    refused: "The server refused this",
    // Programmes, applications and statements.
    nav_calls: "Calls",
    nav_statements: "Statements",
    calls: "Calls for GPU time",
    call: "Call",
    programme: "Programme",
    call_name: "Call name",
    capacity_gpus: "Capacity (GPUs)",
    create_call: "Open a new call",
    create: "Create the call",
    tracks: "Tracks",
    track: "Track",
    track_name: "Track name",
    optional: "optional",
    min_gpus: "Fewest GPUs",
    max_gpus: "Most GPUs",
    max_days: "Longest award (days)",
    whole_server: "Whole servers only",
    server_gpus: "GPUs per server",
    per_org_cap: "Cap per organisation (GPUs)",
    preferred_region: "Preferred region",
    open_call: "Open",
    close_call: "Close",
    state_open: "Open",
    state_closed: "Closed",
    state_call_awarded: "Awarded",
    state_submitted: "Submitted",
    state_app_awarded: "Awarded",
    state_declined: "Declined",
    applications: "Applications",
    application: "Application",
    your_applications: "Your projects' applications",
    apply: "Apply for a project",
    apply_submit: "Submit the application",
    days: "Days",
    region: "Region",
    region_help: "An ISO country code or a region name; left empty, your organisation's country.",
    plan: "Summary of the work",
    gpu_hours_help: "GPU-hours awarded = GPUs × days × 24.",
    who_applies: "Your organisation's administrator applies for its projects; your projects' applications and their state are listed here.",
    scores: "Scores",
    mean_score: "Mean score",
    reviewer: "Reviewer",
    score: "Score (0 to 10)",
    comment: "Comment",
    record_score: "Record the score",
    award_call: "Award the call",
    award_call_help: "Ranks the scored applications by mean score and makes the awards within the call's capacity; the call then takes nothing more.",
    outcome: "Outcome of the award",
    awarded_list: "Awarded",
    declined_list: "Declined",
    statements: "Monthly statement",
    month: "Month",
    all_projects: "All your projects",
    show: "Show",
    download_csv: "Download as CSV",
    charged_hours: "Charged GPU-hours (weighted)",
    refunded_hours: "Refunded GPU-hours",
    credited_hours: "Credited GPU-hours",
    ledger_rows: "Ledger rows",
    org: "Organisation",
    // --- usage over time, fleet shares and job paging (portal-usage) ---
    usage_over_time_org: "GPU-hours per organisation over time (last 30 days)",
    usage_over_time_project: "Award GPU-hours charged per day, by project (last 30 days)",
    day_utc: "Day (UTC)",
    organisation: "Organisation",
    chart_figures: "The chart's figures (days with use)",
    allocated_share: "Held (GPU shares)",
    older: "Older jobs →",
    newer: "← Newer jobs",
    job_pages: "Pages of the job list",
};

pub const KO: Texts = Texts {
    lang: Lang::Ko,
    title: "하늘 GPU 센터",
    switch_to: "English",
    sign_in: "로그인",
    sign_out: "로그아웃",
    token: "액세스 토큰",
    token_help: "받은 토큰을 붙여 넣으세요 (hn_ 으로 시작). `haneul up` 은 DIR/user.token 에 씁니다.",
    bad_token: "유효하지 않거나 폐기된 토큰입니다.",
    nav_home: "홈",
    nav_jobs: "작업",
    nav_fleet: "자원 현황",
    nav_audit: "감사 로그",
    signed_in_as: "로그인 사용자",
    projects: "내 프로젝트",
    project: "프로젝트",
    quotas: "보장 GPU",
    usage: "사용량",
    gpu_model: "GPU 모델",
    gpu_hours: "GPU 시간",
    used_hours: "사용 GPU 시간",
    balances: "배정 잔액",
    award: "배정",
    granted_hours: "배정 GPU 시간",
    left_hours: "남은 GPU 시간",
    valid_until: "유효 기한",
    used_of_granted: "배정 대비 사용 GPU 시간",
    state_pending: "유효 전",
    state_active: "사용 중",
    state_warning: "잔액 부족",
    state_spent: "소진",
    state_expired: "만료",
    none_yet: "아직 없습니다.",
    submit_job: "작업 제출",
    job_name: "작업 이름",
    gpus_per_node: "노드당 GPU",
    nodes: "노드 수",
    node_list: "노드 목록",
    time_limit_min: "시간 제한 (분)",
    command: "명령",
    command_help: "각 노드에서 sh -c 로 실행됩니다.",
    gpu_models_field: "GPU 모델",
    gpu_models_help: "쉼표로 구분합니다 (예: H200,B200). 비워 두면 모든 모델.",
    cpus_per_task: "태스크당 CPU 코어",
    memory_gib_per_task: "태스크당 메모리 (GiB)",
    share_by_gpus_help: "비워 두면 GPU 수에 비례한 노드 몫.",
    priority: "우선순위",
    priority_default: "프로젝트 기본값",
    container_image: "컨테이너 이미지",
    dependency: "의존성",
    dependency_help: "Slurm과 같은 형식: afterok:12 또는 afterany:12:13.",
    submit_again: "다시 제출",
    submit: "제출",
    jobs: "작업 목록",
    job: "작업",
    state: "상태",
    gpus: "GPU",
    submitted: "제출 시각",
    started: "시작 시각",
    ended_at: "종료 시각",
    elapsed: "경과 시간",
    submitter: "제출자",
    gpu_hours_charged: "과금된 GPU 시간",
    exit_code: "종료 코드",
    reason: "사유",
    attempts: "시도",
    logs: "출력",
    cancel: "작업 취소",
    fleet: "자원 현황",
    pool: "풀",
    total: "전체",
    allocated: "할당",
    idle: "유휴",
    draining: "드레인 중",
    down: "중단",
    queue_by_project: "프로젝트별 대기열",
    queued: "대기",
    running: "실행",
    node: "노드",
    actions: "동작",
    drain: "드레인",
    resume: "재개",
    usage_by_org: "기관별 GPU 시간",
    audit: "감사 로그",
    actor: "행위자",
    action: "동작",
    target: "대상",
    detail: "내용",
    time: "시각 (UTC)",
    filter: "필터",
    not_found: "찾을 수 없음",
    not_found_help: "볼 수 있는 항목이 없습니다.",
    forbidden: "허용되지 않음",
    refused: "서버가 거절했습니다",
    // Programmes, applications and statements.
    nav_calls: "공모",
    nav_statements: "정산서",
    calls: "GPU 자원 공모",
    call: "공모",
    programme: "사업",
    call_name: "공모 이름",
    capacity_gpus: "배정 가능 GPU",
    create_call: "새 공모 열기",
    create: "공모 만들기",
    tracks: "트랙",
    track: "트랙",
    track_name: "트랙 이름",
    optional: "선택",
    min_gpus: "최소 GPU",
    max_gpus: "최대 GPU",
    max_days: "최장 기간 (일)",
    whole_server: "서버 단위로만",
    server_gpus: "서버당 GPU",
    per_org_cap: "기관당 상한 (GPU)",
    preferred_region: "우대 지역",
    open_call: "접수 시작",
    close_call: "접수 마감",
    state_open: "접수 중",
    state_closed: "마감",
    state_call_awarded: "선정 완료",
    state_submitted: "제출됨",
    state_app_awarded: "선정",
    state_declined: "미선정",
    applications: "신청 목록",
    application: "신청",
    your_applications: "내 프로젝트의 신청",
    apply: "프로젝트 신청",
    apply_submit: "신청서 제출",
    days: "기간 (일)",
    region: "지역",
    region_help: "ISO 국가 코드 또는 지역 이름. 비워 두면 기관의 국가입니다.",
    plan: "연구 계획 요약",
    gpu_hours_help: "배정 GPU 시간 = GPU × 일 × 24.",
    who_applies: "프로젝트 신청은 기관 관리자가 합니다. 내 프로젝트의 신청과 그 상태가 여기에 나옵니다.",
    scores: "점수",
    mean_score: "평균 점수",
    reviewer: "심사위원",
    score: "점수 (0~10)",
    comment: "의견",
    record_score: "점수 기록",
    award_call: "선정 확정",
    award_call_help: "점수를 받은 신청을 평균 점수 순으로 정렬하여 공모 용량 안에서 배정합니다. 이후 공모는 더 이상 신청을 받지 않습니다.",
    outcome: "선정 결과",
    awarded_list: "선정",
    declined_list: "미선정",
    statements: "월별 정산서",
    month: "월",
    all_projects: "내 모든 프로젝트",
    show: "보기",
    download_csv: "CSV 내려받기",
    charged_hours: "청구 GPU 시간 (가중)",
    refunded_hours: "환불 GPU 시간",
    credited_hours: "적립 GPU 시간",
    ledger_rows: "원장 행 수",
    org: "기관",
    // --- usage over time, fleet shares and job paging (portal-usage) ---
    usage_over_time_org: "기관별 GPU 시간 추이 (최근 30일)",
    usage_over_time_project: "프로젝트별 일일 배정 GPU 시간 차감 (최근 30일)",
    day_utc: "날짜 (UTC)",
    organisation: "기관",
    chart_figures: "차트 수치 (사용한 날)",
    allocated_share: "점유 (GPU 지분)",
    older: "이전 작업 →",
    newer: "← 최근 작업",
    job_pages: "작업 목록 페이지",
};

impl Texts {
    /// A state or reason from the API (`running`, `draining`, a hold reason) in this
    /// language; other text (a free-text reason) is shown as it is.
    pub fn word<'a>(&self, word: &'a str) -> std::borrow::Cow<'a, str> {
        use haneul_api::i18n::{reason_korean, word_korean};
        match self.lang {
            Lang::Ko => match word_korean(word) {
                Some(ko) => ko.into(),
                None => reason_korean(word).map_or(word.into(), Into::into),
            },
            Lang::En => word.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_by_quality() {
        assert_eq!(
            Lang::from_accept_language("ko-KR,ko;q=0.9,en;q=0.8"),
            Lang::Ko
        );
        assert_eq!(Lang::from_accept_language("en-GB,ko;q=0.5"), Lang::En);
        assert_eq!(Lang::from_accept_language("fr, ko;q=0.3"), Lang::Ko);
        assert_eq!(Lang::from_accept_language("fr,de"), Lang::En);
        assert_eq!(Lang::from_accept_language(""), Lang::En);
    }

    #[test]
    fn every_state_the_store_knows_has_a_korean_name() {
        use haneul_store as st;
        let words = st::JobState::ALL
            .iter()
            .map(|s| s.as_str())
            .chain(st::AttemptState::ALL.iter().map(|s| s.as_str()))
            .chain(st::TaskState::ALL.iter().map(|s| s.as_str()))
            .chain(st::StopReason::ALL.iter().map(|s| s.as_str()))
            .chain(st::NodeState::ALL.iter().map(|s| s.as_str()))
            .chain(st::Verification::ALL.iter().map(|s| s.as_str()))
            // The store's reasons for a node that is down or draining without an operator's
            // words (backend.rs).
            .chain(["lost", "unhealthy"]);
        for w in words {
            let ko = KO.word(w);
            assert_ne!(ko.as_ref(), w, "`{w}` has no Korean name");
            assert_eq!(EN.word(w), w);
        }
        assert_eq!(KO.word("disk full"), "disk full");
        let held = haneul_api::i18n::Reason::NoAward.english(&[("project", "llm")]);
        assert!(
            KO.word(&held).starts_with("보류: 프로젝트 `llm` "),
            "{}",
            KO.word(&held)
        );
        assert_eq!(EN.word(&held), held.as_str());
    }
}
