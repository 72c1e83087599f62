//! The API's error catalogue: every `code` an error answer may carry, with its Korean message.
//!
//! The English message is written where the error is made (tests and scripts compare it, so it
//! stays as it is); the Korean one is a template here, filled with the same specifics: the field
//! at fault, the object not found, the limit. A reason written in free text where the error is
//! made (why a value is refused) is passed as `{detail}` unchanged, so the Korean answer never
//! hides what the English one says. A server answers in Korean when the request's
//! `Accept-Language` prefers `ko` (see [`prefers_korean`]).
//!
//! It also names in Korean the state and reason words the API answers with ([`word_korean`]),
//! for the CLI and the portal: the wire keeps the English words, which scripts match on.

/// The language of an error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Ko,
}

macro_rules! codes {
    ($($key:ident = $code:literal { ko: $ko:literal })*) => {
        /// Every error code the API answers with. The strings are stable: clients match on them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $($key),* }
        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$key),*];
            /// The wire form, e.g. `not_found`.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$key => $code),* }
            }
            /// The Korean message template; placeholders are `{name}`.
            pub fn korean(self) -> &'static str {
                match self { $(ErrorCode::$key => $ko),* }
            }
            pub fn parse(code: &str) -> Option<ErrorCode> {
                match code { $($code => Some(ErrorCode::$key),)* _ => None }
            }
        }
    };
}

codes! {
    BadRequest = "bad_request" { ko: "{field}: 요청 값이 올바르지 않습니다 ({detail})" }
    Unauthenticated = "unauthenticated" { ko: "인증에 실패했습니다: {detail}" }
    Forbidden = "forbidden" { ko: "권한이 없습니다: {detail}" }
    NotFound = "not_found" { ko: "{kind} `{id}` 을(를) 찾을 수 없습니다" }
    Conflict = "conflict" { ko: "{field}: 현재 상태와 충돌합니다 ({detail})" }
    PayloadTooLarge = "payload_too_large" { ko: "요청 본문이 한도인 {limit} 바이트보다 큽니다" }
    UnsupportedMediaType = "unsupported_media_type" {
        ko: "본문은 `Content-Type: application/json` 인 JSON 으로 보내세요 (받은 값: {detail})"
    }
    Unprocessable = "unprocessable" { ko: "{field}: 처리할 수 없는 요청입니다 ({detail})" }
    Unavailable = "unavailable" { ko: "지금은 처리할 수 없습니다; 잠시 후 다시 시도하세요 ({detail})" }
    NotLeader = "not_leader" {
        ko: "이 서버는 대기(standby) 서버입니다; 리더 {leader} 로 다시 보내세요"
    }
    Internal = "internal" { ko: "서버 내부 오류입니다; 자세한 내용은 서버 로그에 있습니다" }
    AuditChainBroken = "audit_chain_broken" {
        ko: "감사 로그 해시 체인이 {seq} 번 항목에서 끊어졌습니다 ({detail})"
    }
    RateLimited = "rate_limited" {
        ko: "이 토큰의 쓰기 요청이 너무 많습니다; Retry-After 에 적힌 시간 뒤에 다시 시도하세요"
    }
    Overloaded = "overloaded" { ko: "서버가 연결 한도에 도달했습니다; 잠시 후 다시 시도하세요" }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ErrorCode {
    /// The Korean message with `args` (name, value) filled in. A placeholder without a value is
    /// left as written, which the server's tests catch.
    pub fn korean_with(self, args: &[(&str, &str)]) -> String {
        let mut out = self.korean().to_string();
        for (name, value) in args {
            out = out.replace(&format!("{{{name}}}"), value);
        }
        out
    }

    /// The names of the placeholders in the Korean template.
    pub fn placeholders(self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut rest = self.korean();
        while let Some(i) = rest.find('{') {
            let Some(j) = rest[i..].find('}') else { break };
            out.push(&rest[i + 1..i + j]);
            rest = &rest[i + j + 1..];
        }
        out
    }
}

/// Whether an `Accept-Language` header prefers Korean over English: the language with the
/// highest quality wins, ties go to the earlier entry, and languages other than the two are
/// skipped. A header that does not parse means English.
pub fn prefers_korean(header: &str) -> bool {
    let mut best: Option<(f32, Lang)> = None;
    for entry in header.split(',') {
        let mut parts = entry.split(';');
        let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let primary = tag.split('-').next().unwrap_or("");
        let lang = match primary {
            "ko" => Lang::Ko,
            "en" => Lang::En,
            _ => continue,
        };
        let mut q = 1.0f32;
        for p in parts {
            if let Some(v) = p.trim().strip_prefix("q=") {
                q = v.trim().parse().unwrap_or(0.0);
            }
        }
        if !(q > 0.0 && q <= 1.0) {
            continue;
        }
        if best.is_none_or(|(b, _)| q > b) {
            best = Some((q, lang));
        }
    }
    matches!(best, Some((_, Lang::Ko)))
}

/// The placeholders a code's Korean template may use: the server fills exactly these.
pub fn allowed_placeholders(code: ErrorCode) -> &'static [&'static str] {
    match code {
        ErrorCode::BadRequest | ErrorCode::Conflict | ErrorCode::Unprocessable => {
            &["field", "detail"]
        }
        ErrorCode::NotFound => &["kind", "id"],
        ErrorCode::PayloadTooLarge => &["limit"],
        ErrorCode::AuditChainBroken => &["seq", "detail"],
        ErrorCode::NotLeader => &["leader"],
        ErrorCode::Unauthenticated
        | ErrorCode::Forbidden
        | ErrorCode::UnsupportedMediaType
        | ErrorCode::Unavailable => &["detail"],
        ErrorCode::Internal | ErrorCode::RateLimited | ErrorCode::Overloaded => &[],
    }
}

macro_rules! words {
    ($($word:literal => $ko:literal,)*) => {
        /// Every state and reason word the API answers with, in the order they are listed.
        pub const WORDS: &[&str] = &[$($word),*];
        /// The Korean name of a state or reason word the API answers with (`running`,
        /// `node_lost`, `draining`, `time_limit`, ...); `None` for any other text.
        pub fn word_korean(word: &str) -> Option<&'static str> {
            match word { $($word => Some($ko),)* _ => None }
        }
    };
}

// One table for every state machine, since the same word means the same in each (`running`
// is running for a job, an attempt or a task). The server's tests check that every state its
// store knows is here.
words! {
    // Jobs, attempts and tasks.
    "queued" => "대기 중",
    "assigned" => "배정됨",
    "running" => "실행 중",
    "stopping" => "멈추는 중",
    "succeeded" => "성공",
    "failed" => "실패",
    "cancelled" => "취소됨",
    "timed_out" => "시간 초과",
    "preempted" => "선점됨",
    "node_lost" => "노드 유실",
    "exited" => "종료됨",
    "lost" => "연결 끊김",
    // Why an attempt was asked to stop.
    "cancel" => "취소",
    "preempt" => "선점",
    "time_limit" => "시간 제한",
    "task_failed" => "태스크 실패",
    "idle" => "GPU 유휴",
    // Nodes and why they are down or draining.
    "up" => "정상",
    "draining" => "드레인 중",
    "down" => "중단",
    "unhealthy" => "상태 이상",
    // Organisations' verification.
    "pending" => "대기",
    "verified" => "검증됨",
    "suspended" => "정지됨",
    // Awards (`pending` above: not yet valid).
    "active" => "유효",
    "warning" => "잔량 부족",
    "spent" => "소진",
    "expired" => "만료",
    // Calls and applications.
    "open" => "접수 중",
    "closed" => "마감",
    "awarded" => "선정",
    "submitted" => "제출됨",
    "declined" => "미선정",
}

/// Why the server holds a project's jobs: the `reason` of a held job. The server writes the
/// English with [`Reason::english`]; the CLI and the portal read a stored reason back with
/// [`reason_korean`], which matches it against the same templates, so the two cannot drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    OrgUnverified,
    OrgScreenedOut,
    NoAward,
    AwardExpired,
    AwardPending,
    AwardSpent,
}

impl Reason {
    pub const ALL: &'static [Reason] = &[
        Reason::OrgUnverified,
        Reason::OrgScreenedOut,
        Reason::NoAward,
        Reason::AwardExpired,
        Reason::AwardPending,
        Reason::AwardSpent,
    ];

    /// `(English, Korean)` templates; placeholders are `{name}`.
    fn templates(self) -> (&'static str, &'static str) {
        match self {
            Reason::OrgUnverified => (
                "held: organisation `{org}` is {state}; only verified organisations run jobs (a centre admin runs `haneul org verify {id}`)",
                "보류: 기관 `{org}` 이(가) {state} 상태입니다; 검증된 기관만 작업을 실행합니다 (센터 관리자가 `haneul org verify {id}` 를 실행)",
            ),
            Reason::OrgScreenedOut => (
                "held: organisation `{org}` fails export screening: {detail}",
                "보류: 기관 `{org}` 이(가) 수출 심사를 통과하지 못했습니다: {detail}",
            ),
            Reason::NoAward => (
                "held: project `{project}` has no award; apply to a call or ask the centre for one",
                "보류: 프로젝트 `{project}` 에 배정이 없습니다; 공모에 신청하거나 센터에 요청하세요",
            ),
            Reason::AwardExpired => (
                "held: award {id} of project `{project}` expired on {date}; see `haneul usage` for the balance",
                "보류: 프로젝트 `{project}` 의 배정 {id} 이(가) {date} 에 만료되었습니다; 잔량은 `haneul usage` 로 확인하세요",
            ),
            Reason::AwardPending => (
                "held: award {id} of project `{project}` starts on {date}; see `haneul usage`",
                "보류: 프로젝트 `{project}` 의 배정 {id} 은(는) {date} 에 시작합니다; `haneul usage` 를 확인하세요",
            ),
            Reason::AwardSpent => (
                "held: award {id} of project `{project}` is spent ({used} of {granted} GPU-hours used); see `haneul usage` for the balance",
                "보류: 프로젝트 `{project}` 의 배정 {id} 을(를) 모두 썼습니다 (GPU 시간 {granted} 중 {used} 사용); 잔량은 `haneul usage` 로 확인하세요",
            ),
        }
    }

    /// The English reason with `args` (name, value) filled in.
    pub fn english(self, args: &[(&str, &str)]) -> String {
        fill(self.templates().0, args)
    }

    /// Which reason a stored English text is, when it is one of these.
    pub fn of(text: &str) -> Option<Reason> {
        Reason::ALL
            .iter()
            .copied()
            .find(|r| unfill(r.templates().0, text).is_some())
    }

    /// The Slurm-style code a queued job held for this reason shows: a spent award is
    /// `AssocGrpGRESMinutes` (a GPU-minutes limit), every other hold `JobHeldAdmin`.
    pub fn code(self) -> &'static str {
        match self {
            Reason::AwardSpent => "AssocGrpGRESMinutes",
            _ => "JobHeldAdmin",
        }
    }
}

fn fill(template: &str, args: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for piece in pieces(template) {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Slot(name) => match args.iter().find(|(n, _)| *n == name) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push('{');
                    out.push_str(name);
                    out.push('}');
                }
            },
        }
    }
    out
}

enum Piece<'a> {
    Text(&'a str),
    Slot(&'a str),
}

fn pieces(template: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        let Some(j) = rest[i..].find('}') else { break };
        if i > 0 {
            out.push(Piece::Text(&rest[..i]));
        }
        out.push(Piece::Slot(&rest[i + 1..i + j]));
        rest = &rest[i + j + 1..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    out
}

/// The values of `template`'s placeholders in `text`, when `text` is that template filled in.
/// Each placeholder takes the shortest text up to the next literal piece (the last one, up to
/// the template's end). A name that holds the template's own words may be split elsewhere than
/// it was written, but every character of it still reaches the Korean.
fn unfill<'t>(template: &str, text: &'t str) -> Option<Vec<(String, &'t str)>> {
    let ps = pieces(template);
    let mut rest = text;
    let mut out = Vec::new();
    let mut k = 0;
    while k < ps.len() {
        match &ps[k] {
            Piece::Text(t) => rest = rest.strip_prefix(*t)?,
            Piece::Slot(name) => {
                let end = match ps.get(k + 1) {
                    Some(Piece::Text(next)) if k + 2 == ps.len() => {
                        rest.strip_suffix(*next).map(str::len)?
                    }
                    Some(Piece::Text(next)) => rest.find(*next)?,
                    Some(Piece::Slot(_)) => return None,
                    None => rest.len(),
                };
                out.push((name.to_string(), &rest[..end]));
                rest = &rest[end..];
            }
        }
        k += 1;
    }
    rest.is_empty().then_some(out)
}

/// A reason the server wrote from [`Reason`], in Korean; `None` for any other text. State
/// words inside it (`pending`) are named in Korean too.
pub fn reason_korean(text: &str) -> Option<String> {
    Reason::ALL.iter().find_map(|r| {
        let (en, ko) = r.templates();
        let values = unfill(en, text)?;
        let args: Vec<(&str, &str)> = values
            .iter()
            .map(|(n, v)| {
                let v = if n == "state" {
                    word_korean(v).unwrap_or(v)
                } else {
                    v
                };
                (n.as_str(), v)
            })
            .collect();
        Some(fill(ko, &args))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_code_has_a_korean_message_with_known_placeholders() {
        let mut seen = BTreeSet::new();
        for &code in ErrorCode::ALL {
            let ko = code.korean();
            assert!(
                ko.chars().any(|c| ('\u{AC00}'..='\u{D7A3}').contains(&c)),
                "{code}: the Korean message holds no Hangul: {ko}"
            );
            assert!(!ko.ends_with('.'), "{code} ends with a period");
            let used: BTreeSet<&str> = code.placeholders().into_iter().collect();
            let allowed: BTreeSet<&str> = allowed_placeholders(code).iter().copied().collect();
            assert_eq!(used, allowed, "{code}");
            assert!(seen.insert(code.as_str()), "{code} twice");
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
            assert!(
                code.as_str()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_'),
                "{code}"
            );
        }
        assert_eq!(ErrorCode::parse("nope"), None);
    }

    #[test]
    fn fields_are_filled_and_named_as_sent() {
        let m = ErrorCode::BadRequest.korean_with(&[("field", "gpus"), ("detail", "must be > 0")]);
        assert_eq!(m, "gpus: 요청 값이 올바르지 않습니다 (must be > 0)");
        let m = ErrorCode::NotFound.korean_with(&[("kind", "job"), ("id", "42")]);
        assert!(m.starts_with("job `42` "), "{m}");
    }

    #[test]
    fn every_word_has_korean_once() {
        let mut seen = BTreeSet::new();
        for w in WORDS {
            assert!(seen.insert(*w), "{w} twice");
            let ko = word_korean(w).unwrap();
            assert!(
                ko.chars().any(|c| ('\u{AC00}'..='\u{D7A3}').contains(&c)),
                "{w}: {ko}"
            );
        }
        assert_eq!(word_korean("<script>"), None);
    }

    #[test]
    fn every_reason_reads_back_in_korean_with_the_same_values() {
        let args = [
            ("org", "kaist; `x`"),
            ("state", "pending"),
            ("id", "7"),
            ("detail", "country KP is restricted"),
            ("project", "llm"),
            ("date", "2027-01-01"),
            ("used", "10.00"),
            ("granted", "8.00"),
        ];
        for &r in Reason::ALL {
            let (en, ko) = r.templates();
            let mut en_slots: Vec<&str> = pieces(en)
                .iter()
                .filter_map(|p| match p {
                    Piece::Slot(s) => Some(*s),
                    Piece::Text(_) => None,
                })
                .collect();
            let mut ko_slots: Vec<&str> = pieces(ko)
                .iter()
                .filter_map(|p| match p {
                    Piece::Slot(s) => Some(*s),
                    Piece::Text(_) => None,
                })
                .collect();
            en_slots.sort();
            ko_slots.sort();
            assert_eq!(en_slots, ko_slots, "{r:?}");
            let english = r.english(&args);
            assert!(!english.contains('{'), "{r:?}: {english}");
            let korean = reason_korean(&english).unwrap_or_else(|| panic!("{r:?}: {english}"));
            assert!(korean.starts_with("보류: "), "{korean}");
            assert!(!korean.contains('{'), "{r:?}: {korean}");
            for (name, value) in args {
                if en_slots.contains(&name) && name != "state" {
                    assert!(korean.contains(value), "{r:?}: {korean} lacks {value}");
                }
            }
        }
        assert!(
            reason_korean(&Reason::OrgUnverified.english(&args))
                .unwrap()
                .contains("대기 상태")
        );
        assert_eq!(reason_korean("disk full"), None);
        assert_eq!(reason_korean("held: something new"), None);
    }

    #[test]
    fn accept_language_prefers_by_quality() {
        assert!(prefers_korean("ko"));
        assert!(prefers_korean("ko-KR,ko;q=0.9,en;q=0.8"));
        assert!(prefers_korean("fr, ko;q=0.3"));
        assert!(prefers_korean("en;q=0.5, ko"));
        assert!(!prefers_korean("en-GB,ko;q=0.5"));
        assert!(!prefers_korean("en, ko"));
        assert!(!prefers_korean("ko;q=0, en;q=0.1"));
        assert!(!prefers_korean("ko;q=banana"));
        assert!(!prefers_korean(""));
        assert!(!prefers_korean("fr,de"));
    }
}
