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
    pub submit: &'static str,
    pub jobs: &'static str,
    pub job: &'static str,
    pub state: &'static str,
    pub gpus: &'static str,
    pub submitted: &'static str,
    pub started: &'static str,
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
    submit: "Submit",
    jobs: "Jobs",
    job: "Job",
    state: "State",
    gpus: "GPUs",
    submitted: "Submitted",
    started: "Started",
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
    submit: "제출",
    jobs: "작업 목록",
    job: "작업",
    state: "상태",
    gpus: "GPU",
    submitted: "제출 시각",
    started: "시작 시각",
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
}
