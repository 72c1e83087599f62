//! The portal in a real browser: `haneul up` (server + agent with simulated GPUs) and headless
//! Chromium driven over the DevTools protocol. A researcher signs in, submits a job from the
//! form, watches it finish and reads its logs; a member of another project is shown a 404 page
//! for that job; an operator drains a node and resumes it; the language switch gives Korean.
//! Screenshots of the main pages go to $CARGO_TARGET_DIR/portal-shots (docs/portal.md).
//!
//! Chromium is required: the test fails, naming the fix, when none is found. Set
//! HANEUL_CHROMIUM to a browser binary to use another one.

#[path = "common/browser.rs"]
mod browser;
mod common;

use browser::{click, fill, goto, phone_viewport, shot, text_of, viewport, wait_js, wait_text};
use headless_chrome::Tab;
use serde_json::Value;
use std::ffi::OsStr;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

use common::up::haneul;

fn sign_in(tab: &Tab, base: &str, token: &str) {
    goto(tab, &format!("{base}/portal/signin"));
    fill(tab, "#token", token);
    click(tab, "#signin-submit");
    text_of(tab, "#who");
}

#[test]
fn researcher_and_operator_in_chromium() {
    let started = Instant::now();
    // No Chromium: fail now, naming the fix, before starting anything.
    browser::chromium();
    let shots = shots_dir();
    let (dir, up, base, data) = start_up();
    let root = dir.path().canonicalize().unwrap();
    let config = root.join("config.toml");
    let member_file = data.join("user.token");
    let admin_file = data.join("server/admin.token");
    let member = common::up::token(&member_file);
    let admin = common::up::token(&admin_file);

    // Another project with its own member and a job the demo member must not see.
    let other = haneul(
        &config,
        &admin_file,
        &["project", "create", "--org", "1", "--name", "other"],
    );
    let other_id = other["id"].as_i64().unwrap().to_string();
    let eve = haneul(
        &config,
        &admin_file,
        &[
            "user",
            "create",
            "--name",
            "eve",
            "--role",
            "member",
            "--org",
            "1",
            "--project",
            &other_id,
        ],
    );
    let eve_file = root.join("eve.token");
    haneul(
        &config,
        &admin_file,
        &[
            "token",
            "create",
            "--user",
            &eve["id"].as_i64().unwrap().to_string(),
            "--out",
            eve_file.to_str().unwrap(),
        ],
    );
    let eve_job = haneul(
        &config,
        &eve_file,
        &[
            "submit",
            "--project",
            &other_id,
            "--gpus",
            "1",
            "--",
            "echo",
            "eve-secret",
        ],
    );
    let eve_job = eve_job["id"].as_i64().unwrap();

    let (browser, tab) = browser::launch(1280, 900);

    // Researcher: sign in, see the project, submit from the form, watch it finish, read logs.
    sign_in(&tab, &base, &member);
    assert!(text_of(&tab, "main").contains("demo"));
    shot(&tab, &shots, "home");
    goto(&tab, &format!("{base}/portal/jobs"));
    fill(&tab, "#name", "portal-e2e");
    fill(&tab, "#gpus", "2");
    fill(
        &tab,
        "#command",
        "echo portal-hello; sleep 1; echo gpus-$CUDA_VISIBLE_DEVICES",
    );
    click(&tab, "#submit-job");
    wait_text(&tab, "h1", "portal-e2e");
    let path = wait_js(&tab, "location.pathname", "the job page", Value::is_string);
    let job_id: i64 = path
        .as_str()
        .unwrap()
        .trim_start_matches("/portal/jobs/")
        .parse()
        .unwrap_or_else(|_| panic!("not a job page: {path}"));
    wait_text(&tab, "#state", "succeeded");
    wait_text(&tab, "#log", "portal-hello");
    wait_text(&tab, "#log", "gpus-");
    assert_eq!(text_of(&tab, "#exit-code"), "0");
    wait_text(&tab, "#attempts", "H200");
    assert!(
        tab.find_element("#cancel").is_err(),
        "no cancel on an ended job"
    );
    shot(&tab, &shots, "job");
    goto(&tab, &format!("{base}/portal/jobs"));
    wait_text(&tab, &format!("#job-{job_id}"), "succeeded");
    shot(&tab, &shots, "jobs");

    // Paging: with 55 more jobs (an array of 54 tasks, from the CLI: its own job and one per
    // task) the list shows the newest 50, "older" the other 6 (none of them on the first
    // page), "newer" the first page again.
    let projects = haneul(&config, &member_file, &["project", "list"]);
    let demo = projects[0]["id"].as_i64().unwrap().to_string();
    haneul(
        &config,
        &member_file,
        &[
            "submit",
            "--project",
            &demo,
            "--array",
            "0-53",
            "--gpus",
            "1",
            "--",
            "true",
        ],
    );
    // The ids of the listed rows, as JSON text (evaluate returns no objects by value).
    let rows = |what: &str, n: usize| -> Vec<String> {
        let js = "JSON.stringify(Array.from(document.querySelectorAll('#job-rows tr[id^=job-]')).map(r => r.id))";
        let v = wait_js(&tab, js, what, |v| {
            v.as_str()
                .and_then(|s| serde_json::from_str::<Vec<String>>(s).ok())
                .is_some_and(|ids| ids.len() == n)
        });
        serde_json::from_str(v.as_str().unwrap()).unwrap()
    };
    goto(&tab, &format!("{base}/portal/jobs"));
    // The controller makes an array's tasks as they become eligible and the first page's rows
    // refresh themselves, but its pager is drawn once: wait for the newest task, then load
    // the page again so the pager knows of the older ones.
    wait_js(
        &tab,
        "(() => document.querySelectorAll('#job-rows tr[id^=job-]')[0]?.id ?? null)()",
        "the newest task on the first page",
        |v| v.as_str() == Some(format!("job-{}", job_id + 55).as_str()),
    );
    goto(&tab, &format!("{base}/portal/jobs"));
    let first = rows("the first page of 50", 50);
    assert_eq!(first[0], format!("job-{}", job_id + 55), "newest first");
    click(&tab, "#older");
    let older = rows("the older page of 6", 6);
    for id in &older {
        assert!(!first.contains(id), "{id} on both pages");
    }
    assert!(
        older.contains(&format!("job-{job_id}")),
        "the form's job is on the older page: {older:?}"
    );
    assert!(
        !older.contains(&format!("job-{eve_job}")),
        "another project's job stays invisible"
    );
    shot(&tab, &shots, "jobs-older");
    click(&tab, "#newer");
    assert_eq!(rows("the first page again", 50), first);

    // Another project's job is a 404 page, as in the API, and shows nothing of it.
    goto(&tab, &format!("{base}/portal/jobs/{eve_job}"));
    wait_text(&tab, "#error-heading", "Not found");
    assert!(!text_of(&tab, "body").contains("eve-secret"));
    click(&tab, "#signout");
    wait_text(&tab, "h1", "Sign in");

    // Operator: the fleet, a drain from the page, then resume.
    sign_in(&tab, &base, &admin);
    wait_text(&tab, "h1", "Fleet");
    assert!(text_of(&tab, "#fleet").contains("H200"));
    let node = haneul(&config, &admin_file, &["node", "list"]);
    let node_id = node[0]["id"].as_i64().unwrap();
    click(&tab, &format!("#drain-{node_id}"));
    // The drain is confirmed with a reason, which the audit log keeps.
    wait_text(&tab, "#confirm-heading", "Drain");
    shot(&tab, &shots, "confirm-drain");
    fill(&tab, "#reason", "fan replacement");
    click(&tab, "#confirm");
    wait_text(&tab, &format!("#node-{node_id}-state"), "draining");
    let shown = haneul(
        &config,
        &admin_file,
        &["node", "show", &node_id.to_string()],
    );
    assert_eq!(shown["state"], "draining", "the drain reached the server");
    // GPU-hours per organisation over time: the chart names the organisation, and its figures
    // are in the table beside it.
    let title = wait_js(
        &tab,
        "(() => { const t = document.querySelector('svg.chart.lines title'); return t ? t.textContent : null })()",
        "the usage-over-time chart",
        Value::is_string,
    );
    assert!(title.as_str().unwrap().contains("over time"), "{title}");
    wait_js(
        &tab,
        "(() => { const s = document.querySelector('svg.chart.lines'); return s ? s.textContent : null })()",
        "the organisation in the chart's legend",
        |v| v.as_str().is_some_and(|t| t.contains("demo")),
    );
    wait_text(&tab, "#series-org", "demo");
    shot(&tab, &shots, "fleet");
    click(&tab, &format!("#resume-{node_id}"));
    wait_text(&tab, &format!("#node-{node_id}-state"), "up");
    goto(&tab, &format!("{base}/portal/audit?action=node."));
    wait_text(&tab, "#audit", "node.draining");
    wait_text(&tab, "#audit", "fan replacement");
    shot(&tab, &shots, "audit");

    // Korean by the switch, on a phone-sized screen.
    click(&tab, "#lang-switch");
    wait_text(&tab, "h1", "감사 로그");
    tab.call_method(phone_viewport()).expect("phone viewport");
    goto(&tab, &format!("{base}/portal/fleet"));
    wait_text(&tab, "h1", "자원 현황");
    let overflow = wait_js(
        &tab,
        "document.documentElement.scrollWidth <= window.innerWidth",
        "no sideways scrolling on a phone",
        |v| v.as_bool().is_some(),
    );
    assert_eq!(
        overflow,
        Value::Bool(true),
        "the page is wider than the phone"
    );
    shot(&tab, &shots, "fleet-ko-phone");

    drop(tab);
    drop(browser);
    drop(up);
    eprintln!(
        "portal browser test: {:.1} s, screenshots in {}",
        started.elapsed().as_secs_f64(),
        shots.display()
    );
}

/// Where the screenshots go, linked from docs/portal.md: `$CARGO_TARGET_DIR/portal-shots`.
fn shots_dir() -> PathBuf {
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).with_file_name("portal-shots");
    std::fs::create_dir_all(&shots).unwrap();
    shots
}

/// `haneul up` in a new temporary folder on a free port; returns the folder, the running
/// `haneul up`, its base URL and its data folder.
fn start_up() -> (tempfile::TempDir, Up, String, PathBuf) {
    let dir = common::tempdir();
    let root = dir.path().canonicalize().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let listen = format!("127.0.0.1:{port}");
    let data = root.join("data");
    let child = Command::new(env!("CARGO_BIN_EXE_haneul"))
        .args([OsStr::new("up"), OsStr::new("--data-dir"), data.as_os_str()])
        .args(["--listen", &listen, "--simulate-gpus", "4xH200"])
        .env("HANEUL_CONFIG", root.join("config.toml"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start haneul up");
    let up = Up(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    let written = || data.join("user.token").exists() && root.join("config.toml").exists();
    while !written() {
        assert!(
            Instant::now() < deadline,
            "haneul up wrote no config or user token"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (dir, up, format!("http://{listen}"), data)
}

/// Whether `path` laid out in a 390 px wide frame (a phone) needs no sideways scrolling.
fn fits_a_phone(tab: &Tab, url: &str) -> Value {
    // The portal may not be framed (frame-ancestors 'none'), so the tab itself becomes a phone
    // for the page, and goes back to the desktop size after.
    tab.call_method(phone_viewport()).expect("phone viewport");
    goto(tab, url);
    let fits = tab
        .evaluate(
            "document.documentElement.scrollWidth <= 390 ? 'fits' : \
             'wide: ' + document.documentElement.scrollWidth + ' px'",
            false,
        )
        .ok()
        .and_then(|r| r.value)
        .unwrap_or(Value::Null);
    browser::desktop(tab);
    fits
}

#[test]
fn a_call_from_the_operators_form_to_the_researchers_award() {
    // No Chromium: fail now, naming the fix, before starting anything.
    browser::chromium();
    let shots = shots_dir();
    let (dir, up, base, data) = start_up();
    let root = dir.path().canonicalize().unwrap();
    let config = root.join("config.toml");
    let admin_file = data.join("server/admin.token");
    let read = |p: &Path| std::fs::read_to_string(p).unwrap().trim().to_string();
    let (admin, member) = (read(&admin_file), read(&data.join("user.token")));
    let projects = haneul(&config, &admin_file, &["project", "list"]);
    let demo = projects
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "demo")
        .unwrap_or_else(|| panic!("no demo project: {projects}"));
    let (demo_id, org) = (demo["id"].as_i64().unwrap(), demo["org"].as_i64().unwrap());
    // The researcher who applies: the demo organisation's admin (the API lets an
    // organisation's admin apply for its projects; the member then holds the award).
    let pi = haneul(
        &config,
        &admin_file,
        &[
            "user",
            "create",
            "--name",
            "pi",
            "--role",
            "org-admin",
            "--org",
            &org.to_string(),
        ],
    );
    let pi_file = root.join("pi.token");
    let pi_id = pi["id"].as_i64().unwrap().to_string();
    let out = pi_file.to_str().unwrap();
    haneul(
        &config,
        &admin_file,
        &["token", "create", "--user", &pi_id, "--out", out],
    );
    let pi = read(&pi_file);

    let (browser, tab) = browser::launch(1280, 900);

    // The operator creates a call from the form (it opens at once), closes and reopens it.
    sign_in(&tab, &base, &admin);
    goto(&tab, &format!("{base}/portal/calls"));
    for (field, value) in [
        ("#programme", "national-ai"),
        ("#call-name", "browser-call"),
        ("#capacity_gpus", "4"),
        ("#t1_name", "small"),
        ("#t1_max", "4"),
        ("#t1_days", "30"),
    ] {
        fill(&tab, field, value);
    }
    click(&tab, "#create-call");
    wait_text(&tab, "h1", "browser-call");
    let path = wait_js(&tab, "location.pathname", "the call page", Value::is_string);
    let call: i64 = path.as_str().unwrap()["/portal/calls/".len()..]
        .parse()
        .unwrap_or_else(|_| panic!("not a call page: {path}"));
    wait_text(&tab, "#call-state", "Open");
    goto(&tab, &format!("{base}/portal/calls"));
    click(&tab, &format!("#close-{call}"));
    fill(&tab, "#reason", "the panel is full");
    click(&tab, "#confirm");
    wait_text(&tab, &format!("#call-{call}-state"), "Closed");
    click(&tab, &format!("#open-{call}"));
    wait_text(&tab, &format!("#call-{call}-state"), "Open");
    shot(&tab, &shots, "calls");
    for page in [
        "/portal/calls".to_string(),
        format!("/portal/calls/{call}"),
        "/portal/statements".to_string(),
    ] {
        assert_eq!(
            fits_a_phone(&tab, &format!("{base}{page}")),
            "fits",
            "{page} on a 390 px screen"
        );
    }
    click(&tab, "#signout");
    wait_text(&tab, "h1", "Sign in");

    // The researcher applies for the demo project.
    sign_in(&tab, &base, &pi);
    goto(&tab, &format!("{base}/portal/calls/{call}"));
    fill(&tab, "#app-project", &demo_id.to_string());
    fill(&tab, "#app-gpus", "2");
    fill(&tab, "#app-days", "10");
    fill(&tab, "#app-plan", "fine-tune a Korean speech model");
    click(&tab, "#apply-submit");
    wait_text(&tab, "#applications", "Submitted");
    let app = wait_js(
        &tab,
        "document.querySelector('#applications tbody tr').id",
        "the application's row",
        Value::is_string,
    );
    let app = app.as_str().unwrap().trim_start_matches("app-").to_string();
    shot(&tab, &shots, "call-applied");
    click(&tab, "#signout");
    wait_text(&tab, "h1", "Sign in");

    // The operator scores it and awards the call; the outcome names the award.
    sign_in(&tab, &base, &admin);
    goto(&tab, &format!("{base}/portal/calls/{call}"));
    fill(&tab, &format!("#score-{app}"), "9");
    click(&tab, &format!("#score-submit-{app}"));
    wait_text(&tab, &format!("#app-{app} .mean"), "9.00");
    click(&tab, "#award-call");
    fill(&tab, "#reason", "panel decision");
    click(&tab, "#confirm");
    wait_text(&tab, "#outcome-awarded", "demo");
    assert_eq!(text_of(&tab, "#call-state"), "Awarded");
    let award = wait_js(
        &tab,
        "document.querySelector('#outcome-awarded tbody tr').id",
        "the award's row",
        Value::is_string,
    );
    let award = award
        .as_str()
        .unwrap()
        .trim_start_matches("awarded-")
        .to_string();
    shot(&tab, &shots, "call-awarded");
    click(&tab, "#signout");
    wait_text(&tab, "h1", "Sign in");

    // The demo member finds the award on the home page: 2 GPUs x 10 days x 24 GPU-hours.
    sign_in(&tab, &base, &member);
    wait_text(&tab, &format!("#award-{award} .granted"), "480.0");
    assert_eq!(text_of(&tab, &format!("#award-{award} .state")), "Active");
    shot(&tab, &shots, "home-award");
    goto(&tab, &format!("{base}/portal/statements"));
    wait_text(&tab, "h1", "Monthly statement");
    shot(&tab, &shots, "statements");

    drop(tab);
    drop(browser);
    drop(up);
}

/// What is wrong with the layout of the page in the tab, as sentences (empty: nothing). The
/// page must not scroll sideways; no box may stick out of the window or out of the card it is
/// in, except inside a `.scroll` box (a wide table scrolls there, inside its card); and no two
/// cards may overlap.
const LAYOUT_PROBLEMS: &str = r#"(() => {
  const vw = document.documentElement.clientWidth;
  const name = e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
    (e.className && typeof e.className === 'string' ? '.' + e.className.trim().split(/\s+/).join('.') : '');
  const problems = [];
  if (document.documentElement.scrollWidth > vw + 1) {
    problems.push('the page scrolls sideways: ' + document.documentElement.scrollWidth + ' px in ' + vw);
  }
  for (const e of document.querySelectorAll('main *')) {
    const r = e.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    const scroller = e.parentElement && e.parentElement.closest('.scroll');
    if (scroller) continue;
    if (r.right > vw + 1 || r.left < -1) {
      problems.push(name(e) + ' sticks out of the window (' + Math.round(r.left) + '..' + Math.round(r.right) + ' in ' + vw + ')');
      continue;
    }
    const card = e.parentElement && e.parentElement.closest('.card');
    if (card) {
      const c = card.getBoundingClientRect();
      if (r.right > c.right + 1 || r.left < c.left - 1) {
        problems.push(name(e) + ' sticks out of ' + name(card));
      }
    }
  }
  const cards = [...document.querySelectorAll('main .card')];
  for (let i = 0; i < cards.length; i++) {
    for (let j = i + 1; j < cards.length; j++) {
      const [a, b] = [cards[i], cards[j]];
      if (a.contains(b) || b.contains(a)) continue;
      const [p, q] = [a.getBoundingClientRect(), b.getBoundingClientRect()];
      const across = Math.min(p.right, q.right) - Math.max(p.left, q.left);
      const down = Math.min(p.bottom, q.bottom) - Math.max(p.top, q.top);
      if (across > 1 && down > 1) problems.push(name(a) + ' and ' + name(b) + ' overlap');
    }
  }
  return JSON.stringify(problems.slice(0, 10));
})()"#;

/// Every page, for every role, with 1, 3 and 12 projects, at 400, 1000 and 1600 px in English
/// and at 400 px in Korean: nothing scrolls sideways, sticks out of its card or covers another
/// card. Screenshots of the crowded cases go beside the others (docs/portal.md).
#[test]
fn every_page_holds_its_layout_for_every_role_and_width() {
    let started = Instant::now();
    // No Chromium: fail now, naming the fix, before starting anything.
    browser::chromium();
    let shots = shots_dir();
    let (dir, _up, base, data) = start_up();
    let root = dir.path().canonicalize().unwrap();
    let config = root.join("config.toml");
    let admin_file = data.join("server/admin.token");
    let read = |p: &Path| std::fs::read_to_string(p).unwrap().trim().to_string();
    let id_of = |v: &Value| v["id"].as_i64().unwrap().to_string();

    // Three organisations with 1, 3 and 12 projects, each project with an award and a job;
    // in each, an organisation admin and a member of every one of its projects.
    let mut people: Vec<(String, String)> = Vec::new();
    let token_for = |user: &Value, who: &str| {
        let file = root.join(format!("{who}.token"));
        haneul(
            &config,
            &admin_file,
            &[
                "token",
                "create",
                "--user",
                &id_of(user),
                "--out",
                file.to_str().unwrap(),
            ],
        );
        read(&file)
    };
    let mut a_job = None;
    let mut a_call = None;
    for count in [1, 3, 12] {
        let org = haneul(
            &config,
            &admin_file,
            &[
                "org",
                "create",
                &format!("institute-with-{count}-projects"),
                "--country",
                "KR",
            ],
        );
        let org_id = id_of(&org);
        let mut projects = Vec::new();
        for p in 0..count {
            let project = haneul(
                &config,
                &admin_file,
                &[
                    "project",
                    "create",
                    "--org",
                    &org_id,
                    "--name",
                    &format!("a-rather-long-project-name-{count}-{p}"),
                ],
            );
            let pid = id_of(&project);
            haneul(
                &config,
                &admin_file,
                &[
                    "award",
                    "create",
                    "--project",
                    &pid,
                    "--gpu-model",
                    "H200",
                    "--gpu-hours",
                    "1234",
                    "--days",
                    "90",
                    "--gpu-quota",
                    "4",
                ],
            );
            projects.push(pid);
        }
        let mut member_args = vec![
            "user".to_string(),
            "create".into(),
            "--name".into(),
            format!("member-of-{count}"),
            "--role".into(),
            "member".into(),
            "--org".into(),
            org_id.clone(),
        ];
        for pid in &projects {
            member_args.extend(["--project".to_string(), pid.clone()]);
        }
        let member_args: Vec<&str> = member_args.iter().map(String::as_str).collect();
        let member = haneul(&config, &admin_file, &member_args);
        let member_token = token_for(&member, &format!("member-of-{count}"));
        let member_file = root.join(format!("member-of-{count}.token"));
        for pid in &projects {
            let job = haneul(
                &config,
                &member_file,
                &[
                    "submit",
                    "--project",
                    pid,
                    "--gpus",
                    "1",
                    "--name",
                    "layout",
                    "--",
                    "true",
                ],
            );
            a_job.get_or_insert(id_of(&job));
        }
        let admin_of = haneul(
            &config,
            &admin_file,
            &[
                "user",
                "create",
                "--name",
                &format!("admin-of-{count}"),
                "--role",
                "org-admin",
                "--org",
                &org_id,
            ],
        );
        people.push((format!("member-{count}"), member_token));
        people.push((
            format!("org-admin-{count}"),
            token_for(&admin_of, &format!("admin-of-{count}")),
        ));
    }
    let auditor = haneul(
        &config,
        &admin_file,
        &["user", "create", "--name", "auditor", "--role", "auditor"],
    );
    people.push(("auditor".into(), token_for(&auditor, "auditor")));
    people.push(("centre-admin-16".into(), read(&admin_file)));
    let call = haneul(
        &config,
        &admin_file,
        &[
            "call",
            "create",
            "--programme",
            "national-ai",
            "--name",
            "layout-call",
            "--gpu-model",
            "H200",
            "--capacity",
            "16",
            "--track",
            "name=small,max=4,days=90",
        ],
    );
    a_call.get_or_insert(id_of(&call));
    let job = a_job.unwrap();
    let call = a_call.unwrap();

    let (browser, _tab) = browser::launch(1600, 900);

    let pages = [
        "/portal".to_string(),
        "/portal/jobs".into(),
        format!("/portal/jobs/{job}"),
        "/portal/fleet".into(),
        "/portal/audit".into(),
        "/portal/calls".into(),
        format!("/portal/calls/{call}"),
        "/portal/statements".into(),
    ];
    // Each width in English, then the narrowest in Korean: its labels are the other language's
    // longest words, and Hangul under `word-break: keep-all` wraps only at spaces.
    let layouts = [("en", 400), ("en", 1000), ("en", 1600), ("ko", 400)];
    let set_up = started.elapsed();
    // The people are shared out among a few tabs, each in a browser context of its own (its
    // own cookies, so its own session), that check their pages at the same time: most of a
    // page's time is waiting for the server and the browser, not working.
    const TABS: usize = 4;
    let (people, pages, base, shots, browser) = (&people, &pages, &base, &shots, &browser);
    let per_tab: Vec<(usize, Vec<String>)> = std::thread::scope(|scope| {
        let tabs: Vec<_> = (0..TABS)
            .map(|first| {
                scope.spawn(move || {
                    let context = browser.new_context().expect("a browser context");
                    let tab = context.new_tab().expect("a tab");
                    tab.set_default_timeout(Duration::from_secs(15));
                    let mut failures = Vec::new();
                    let mut checked = 0;
                    for (who, token) in people.iter().skip(first).step_by(TABS) {
                        checked += check_layouts(
                            &tab,
                            base,
                            shots,
                            who,
                            token,
                            &layouts,
                            pages,
                            &mut failures,
                        );
                    }
                    (checked, failures)
                })
            })
            .collect();
        tabs.into_iter()
            .map(|t| t.join().expect("a tab's thread"))
            .collect()
    });
    let checked: usize = per_tab.iter().map(|(n, _)| n).sum();
    let failures: Vec<String> = per_tab.into_iter().flat_map(|(_, f)| f).collect();
    eprintln!(
        "layout test: {checked} layouts in {:.1} s after {:.1} s of setting up",
        (started.elapsed() - set_up).as_secs_f64(),
        set_up.as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {checked} page layouts fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(checked, people.len() * layouts.len() * pages.len());
}

/// Signs `who` in on `tab` and checks every page in each of `layouts` (language, width), adding
/// a line to `failures` for each page whose layout has a problem; returns how many it checked.
#[allow(clippy::too_many_arguments)]
fn check_layouts(
    tab: &Tab,
    base: &str,
    shots: &Path,
    who: &str,
    token: &str,
    layouts: &[(&str, u32)],
    pages: &[String],
    failures: &mut Vec<String>,
) -> usize {
    let mut checked = 0;
    sign_in(tab, base, token);
    for &(lang, width) in layouts {
        tab.call_method(viewport(width, 900)).expect("viewport");
        goto(tab, &format!("{base}/portal/lang/{lang}?back=/portal"));
        wait_js(
            tab,
            "document.documentElement.lang",
            &format!("the portal in {lang}"),
            |v| v.as_str() == Some(lang),
        );
        for page in pages {
            goto(tab, &format!("{base}{page}"));
            // An array comes back from the browser as a reference; a string by value.
            let problems = tab
                .evaluate(LAYOUT_PROBLEMS, false)
                .ok()
                .and_then(|r| r.value)
                .and_then(|v| v.as_str().and_then(|s| serde_json::from_str(s).ok()))
                .unwrap_or(Value::Null);
            checked += 1;
            match problems.as_array() {
                Some(list) if list.is_empty() => {}
                _ => failures.push(format!(
                    "{who} at {width} px in {lang} on {page}: {problems}"
                )),
            }
            if page == "/portal" && (who == "member-12" || who == "centre-admin-16") {
                let suffix = if lang == "en" { "" } else { "-ko" };
                shot(tab, shots, &format!("layout-home-{who}-{width}{suffix}"));
            }
        }
    }
    browser::desktop(tab);
    goto(tab, &format!("{base}/portal/lang/en?back=/portal"));
    click(tab, "#signout");
    wait_text(tab, "h1", "Sign in");
    checked
}
