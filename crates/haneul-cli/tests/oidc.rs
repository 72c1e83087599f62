//! Sign-in with an institution against a real identity provider: oidc-provider (npm), started
//! on loopback from tests/oidc/idp.mjs, and the real `haneul server` with two mapping rules.
//! One test signs in through the portal in headless Chromium; the other is driven over plain
//! HTTP with a cookie jar, as a browser would follow the redirects:
//! a refused domain, a first sign-in left pending and approved by the org admin, an account
//! approved at once by a group rule, a signing key rotated at the provider, `haneul login`'s
//! device flow with the token refreshed and revoked by `haneul logout`, and an expired ID
//! token refused.
//!
//! Needs Node.js and npm: the provider is installed with `npm ci` into the cargo target
//! directory on first use (scripts/test installs Node.js where missing).

#[path = "common/browser.rs"]
#[allow(dead_code)]
mod browser;
mod common;

use common::Server;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "portal-secret-for-the-test-idp-0123456789";

/// The provider's package, installed once per target directory. The tests of this file run on
/// threads of one process, and two `npm ci` in one directory at once break each other's
/// install (one removes the `node_modules` the other is filling), so the first to come installs
/// it and the others wait for it.
fn idp_dir() -> PathBuf {
    static INSTALLED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    INSTALLED.get_or_init(install_idp).clone()
}

fn install_idp() -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("oidc-idp");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["package.json", "package-lock.json", "idp.mjs"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    if !dir.join("node_modules/oidc-provider/package.json").exists() {
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .output()
            .expect(
                "npm is needed for the identity provider of this test: install Node.js and npm \
                 (`apt-get install -y nodejs npm`; scripts/test does)",
            );
        assert!(
            out.status.success(),
            "npm ci in {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Idp {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Idp {
    fn start(redirect: &str) -> Idp {
        let dir = idp_dir();
        let port = free_port();
        let mut child = Command::new("node")
            .arg("idp.mjs")
            .arg(port.to_string())
            .arg(redirect)
            .arg(SECRET)
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node is needed for the identity provider of this test");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.contains("idp listening") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the identity provider started");
        Idp {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn control(&self, path: &str, body: Value) -> Value {
        let r = request(
            self.addr,
            "POST",
            path,
            &[("content-type", "application/json")],
            Some(body.to_string()),
        );
        assert!(r.status < 300, "idp {path}: {} {}", r.status, r.body);
        serde_json::from_str(&r.body).unwrap_or(Value::Null)
    }

    /// The person the next login at the provider is.
    fn next_login(&self, sub: &str, email: &str, groups: &[&str]) {
        self.control(
            "/test/login",
            json!({"sub": sub, "email": email, "email_verified": true, "groups": groups,
                   "preferred_username": email.split('@').next().unwrap()}),
        );
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request with `Connection: close`.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> Reply {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.unwrap_or_default();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A browser of sorts: cookies per host and port, redirects followed by hand.
#[derive(Default)]
struct Browser {
    jar: BTreeMap<SocketAddr, BTreeMap<String, String>>,
}

impl Browser {
    fn go(&mut self, method: &str, url: &str, form: Option<&str>) -> (String, Reply) {
        let u = url::Url::parse(url).unwrap();
        let addr: SocketAddr = format!("{}:{}", u.host_str().unwrap(), u.port().unwrap())
            .parse()
            .unwrap();
        let cookies = self
            .jar
            .get(&addr)
            .map(|c| {
                c.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        let path = match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        };
        let origin = format!("http://{addr}");
        let mut headers = vec![("cookie", cookies.as_str()), ("origin", origin.as_str())];
        if form.is_some() {
            headers.push(("content-type", "application/x-www-form-urlencoded"));
        }
        let r = request(addr, method, &path, &headers, form.map(String::from));
        for (k, v) in &r.headers {
            if k.eq_ignore_ascii_case("set-cookie") {
                let pair = v.split(';').next().unwrap_or("");
                if let Some((name, value)) = pair.split_once('=') {
                    let jar = self.jar.entry(addr).or_default();
                    let expired = v.to_ascii_lowercase().contains("max-age=0")
                        || v.to_ascii_lowercase().contains("expires=thu, 01 jan 1970");
                    if value.is_empty() || expired {
                        jar.remove(name.trim());
                    } else {
                        jar.insert(name.trim().to_string(), value.to_string());
                    }
                }
            }
        }
        (url.to_string(), r)
    }

    /// Sets the portal's language switch to Korean for the server at `base`.
    fn prefer_korean(&mut self, base: &str) {
        let u = url::Url::parse(base).unwrap();
        let addr: SocketAddr = format!("{}:{}", u.host_str().unwrap(), u.port().unwrap())
            .parse()
            .unwrap();
        self.jar
            .entry(addr)
            .or_default()
            .insert("haneul_lang".into(), "ko".into());
    }

    /// GETs `url` and follows redirects (and the callback's refresh page) to the end.
    fn follow(&mut self, url: &str) -> (String, Reply) {
        let mut url = url.to_string();
        for _ in 0..20 {
            let (at, r) = self.go("GET", &url, None);
            if (300..400).contains(&r.status) {
                let loc = r.header("location").unwrap().to_string();
                url = url::Url::parse(&at)
                    .unwrap()
                    .join(&loc)
                    .unwrap()
                    .to_string();
                continue;
            }
            if r.status == 200 && r.body.contains("http-equiv=\"refresh\"") {
                let u = url::Url::parse(&at).unwrap().join("/portal").unwrap();
                url = u.to_string();
                continue;
            }
            return (at, r);
        }
        panic!("too many redirects from {url}");
    }
}

fn write_config(dir: &Path, idp: &Idp) -> PathBuf {
    let path = dir.join("oidc.toml");
    let secret = dir.join("portal.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    std::fs::write(
        &path,
        format!(
            r#"
[[issuer]]
id = "uni"
name = "Uni IdP"
url = "{}"
client_id = "haneul-portal"
client_secret_file = "{}"
cli_client_id = "haneul-cli"
scopes = ["email", "profile", "groups"]

[[issuer.map]]
email_domain = "uni.example"
group = "gpu-admins"
org = "uni"
role = "org-admin"
approve = true

[[issuer.map]]
email_domain = "uni.example"
org = "uni"
"#,
            idp.url(),
            secret.display()
        ),
    )
    .unwrap();
    path
}

fn audit_actions(server: &Server, admin: &str) -> Vec<Value> {
    let (s, v) = server.get(Some(admin), "/v1/audit?limit=1000");
    assert_eq!(s, 200, "{v}");
    v.as_array()
        .or_else(|| v["entries"].as_array())
        .cloned()
        .unwrap_or_default()
}

fn user_named(server: &Server, admin: &str, name: &str) -> Option<Value> {
    let (s, v) = server.get(Some(admin), "/v1/users");
    assert_eq!(s, 200, "{v}");
    v.as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == name)
        .cloned()
}

/// The test provider and a server that trusts it (the server's port is chosen first, so the
/// provider knows the portal's callback), with the organisation `uni` the rules map to.
struct Centre {
    idp: Idp,
    dir: tempfile::TempDir,
    server: Server,
    admin: String,
    base: String,
}

fn centre() -> Centre {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let idp = Idp::start(&format!("{base}/portal/oidc/uni/callback"));
    let dir = common::tempdir();
    let config = write_config(dir.path(), &idp);
    let server = Server::start_on(
        &dir.path().join("data"),
        None,
        &format!("127.0.0.1:{port}"),
        &["--oidc-config", config.to_str().unwrap()],
    );
    let admin = server.admin_token();
    server.must(
        &admin,
        "/v1/orgs",
        json!({"name": "uni", "class": "academia", "country": "KR"}),
        201,
    );
    Centre {
        idp,
        dir,
        server,
        admin,
        base,
    }
}

#[test]
fn institution_sign_in_against_a_real_identity_provider() {
    let Centre {
        idp,
        dir,
        server,
        admin,
        base,
    } = centre();

    // The sign-in page offers the provider.
    let mut b = Browser::default();
    let (_, page) = b.follow(&format!("{base}/portal/signin"));
    assert!(
        page.body.contains("href=\"/portal/oidc/uni\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("Sign in with Uni IdP"));

    // A domain no rule maps: no account, a clear page, an audit entry.
    idp.next_login("mallory-1", "mallory@evil.example", &[]);
    let (_, r) = b.follow(&format!("{base}/portal/oidc/uni"));
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("data-kind=\"no-account\""), "{}", r.body);
    assert!(r.body.contains("evil.example"), "{}", r.body);
    assert!(user_named(&server, &admin, "mallory").is_none());

    // A first sign-in from the university: a member account, pending; Kim reads the portal in
    // Korean, and the refusal says what it means in Korean too.
    let mut kim_browser = Browser::default();
    kim_browser.prefer_korean(&base);
    idp.next_login("kim-1", "kim@uni.example", &[]);
    let (_, r) = kim_browser.follow(&format!("{base}/portal/oidc/uni"));
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("data-kind=\"pending\""), "{}", r.body);
    assert!(r.body.contains("승인을 기다리고"), "{}", r.body);
    let kim = user_named(&server, &admin, "kim").expect("kim was provisioned");
    assert_eq!(kim["role"], "member");

    // An admin by group: approved at once, signed in, an org admin of uni.
    let mut lee_browser = Browser::default();
    idp.next_login("lee-1", "lee@uni.example", &["gpu-admins"]);
    let (at, r) = lee_browser.follow(&format!("{base}/portal/oidc/uni"));
    assert_eq!(r.status, 200, "{at}: {}", r.body);
    assert!(at.ends_with("/portal"), "{at}");
    assert!(r.body.contains("<b>lee</b>"), "{}", r.body);
    let lee = user_named(&server, &admin, "lee").unwrap();
    assert_eq!(lee["role"], "org-admin");

    // Lee finds Kim among the pending with `haneul user list --pending` and approves them with
    // `haneul user approve`, on a token of Lee's own; Kim signs in.
    let lee_token = server.must(&admin, "/v1/tokens", json!({"user": lee["id"]}), 201)["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let as_lee = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_haneul"))
            .args(args)
            .env("HANEUL_CONFIG", dir.path().join("lee.toml"))
            .env("HANEUL_SERVER", &base)
            .env("HANEUL_TOKEN", &lee_token)
            .env_remove("HANEUL_TOKEN_FILE")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        (out.status.success(), stdout, stderr)
    };
    let (ok, pending, err) = as_lee(&["user", "list", "--pending", "--json"]);
    assert!(ok, "haneul user list --pending: {err}");
    let pending: Value = serde_json::from_str(&pending).unwrap();
    let names: Vec<&str> = pending
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["kim"], "lee (approved at once) is not pending");
    let kim_id = kim["id"].to_string();
    let (ok, approved, err) = as_lee(&["user", "approve", &kim_id, "--json"]);
    assert!(ok, "haneul user approve: {err}");
    let approved: Value = serde_json::from_str(&approved).unwrap();
    assert_eq!(approved["approved_by"], "lee");
    assert_eq!(approved["email"], "kim@uni.example");
    let (ok, pending, _) = as_lee(&["user", "list", "--pending", "--json"]);
    assert!(ok);
    assert_eq!(serde_json::from_str::<Value>(&pending).unwrap(), json!([]));
    // Approving twice is refused with the server's reason.
    let (ok, _, err) = as_lee(&["user", "approve", &kim_id]);
    assert!(!ok && !err.is_empty(), "a second approval succeeded");
    idp.next_login("kim-1", "kim@uni.example", &[]);
    let (at, r) = kim_browser.follow(&format!("{base}/portal/oidc/uni"));
    assert_eq!(r.status, 200, "{at}: {}", r.body);
    assert!(r.body.contains("<b>kim</b>"), "{}", r.body);

    // A callback whose state this browser was not given is refused (login CSRF).
    let (_, r) = Browser::default().follow(&format!(
        "{base}/portal/oidc/uni/callback?code=x&state=forged"
    ));
    assert_eq!(r.status, 401, "{}", r.body);

    // The provider rotates its signing key: the server fetches the keys again and signs in.
    let rotated = idp.control("/test/rotate", json!({}));
    assert!(rotated["kid"].is_string());
    idp.next_login("lee-1", "lee@uni.example", &["gpu-admins"]);
    let (at, r) = Browser::default().follow(&format!("{base}/portal/oidc/uni"));
    assert_eq!(r.status, 200, "after rotation {at}: {}", r.body);
    assert!(r.body.contains("<b>lee</b>"));

    let actions = audit_actions(&server, &admin);
    let count = |a: &str| actions.iter().filter(|e| e["action"] == a).count();
    assert_eq!(count("user.provision"), 2, "{actions:?}");
    assert_eq!(count("user.approve"), 1);
    assert_eq!(count("user.signin"), 3);
    assert_eq!(count("user.signin.refused"), 1);

    // The terminal: `haneul login` (device flow), then commands use its token.
    let home = dir.path().join("home");
    let cfg = home.join("config.toml");
    std::fs::create_dir_all(&home).unwrap();
    let haneul = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_haneul"))
            .args(args)
            .env("HANEUL_CONFIG", &cfg)
            .env("HANEUL_SERVER", &base)
            .env_remove("HANEUL_TOKEN")
            .env_remove("HANEUL_TOKEN_FILE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    idp.next_login("kim-1", "kim@uni.example", &[]);
    let mut login = haneul(&["login"]);
    let mut out = BufReader::new(login.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let code = line
        .split("enter the code ")
        .nth(1)
        .unwrap_or_else(|| panic!("no code in `{line}`"))
        .trim()
        .to_string();
    device_approve(&idp, &code);
    let status = login.wait().unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(status.success(), "haneul login: {rest}");
    assert!(rest.contains("signed in as kim"), "{rest}");
    let state_file = home.join("login.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&state_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let whoami = |want_ok: bool| {
        let o = haneul(&["whoami", "--json"]).wait_with_output().unwrap();
        assert_eq!(
            o.status.success(),
            want_ok,
            "whoami: {} {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(whoami(true).contains("\"kim\""));

    // Near its end the token is refreshed silently through the provider's refresh token.
    let mut st: Value =
        serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap()).unwrap();
    let old_token = st["token"].as_str().unwrap().to_string();
    st["expires_at"] = json!(0);
    std::fs::write(&state_file, st.to_string()).unwrap();
    assert!(whoami(true).contains("\"kim\""));
    let st: Value = serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap()).unwrap();
    assert_ne!(st["token"].as_str().unwrap(), old_token);
    let refreshed = st["token"].as_str().unwrap().to_string();

    // Logout revokes: the token no longer works, the file is gone.
    let o = haneul(&["logout"]).wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!state_file.exists());
    let (s, _) = server.get(Some(&refreshed), "/v1/whoami");
    assert_eq!(s, 401);

    // An expired ID token is refused by the exchange.
    idp.control("/test/ttl", json!({"id_token": 1}));
    idp.next_login("kim-1", "kim@uni.example", &[]);
    let id_token = device_id_token(&idp);
    std::thread::sleep(Duration::from_millis(2500));
    let r = request(
        server.addr,
        "POST",
        "/v1/auth/oidc/token",
        &[("content-type", "application/json")],
        Some(json!({"issuer": "uni", "id_token": id_token}).to_string()),
    );
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("expired"), "{}", r.body);
}

/// The person at the provider's device page enters `code` and confirms.
fn device_approve(idp: &Idp, code: &str) {
    let mut b = Browser::default();
    let (_, page) = b.follow(&format!("{}/device?user_code={code}", idp.url()));
    assert_eq!(page.status, 200, "{}", page.body);
    let xsrf = page
        .body
        .split("name=\"xsrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no xsrf in {}", page.body))
        .to_string();
    let form = format!("xsrf={xsrf}&user_code={code}&confirm=yes");
    let (at, mut r) = b.go("POST", &format!("{}/device", idp.url()), Some(&form));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut at = at;
    while (300..400).contains(&r.status) {
        assert!(Instant::now() < deadline);
        let loc = r.header("location").unwrap().to_string();
        let next = url::Url::parse(&at)
            .unwrap()
            .join(&loc)
            .unwrap()
            .to_string();
        (at, r) = b.go("GET", &next, None);
    }
    assert_eq!(r.status, 200, "{at}: {}", r.body);
}

/// An ID token of the CLI's client through the device flow, driven by the test alone.
fn device_id_token(idp: &Idp) -> String {
    let form = "client_id=haneul-cli&scope=openid%20email%20profile";
    let r = request(
        idp.addr,
        "POST",
        "/device/auth",
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(form.into()),
    );
    let d: Value = serde_json::from_str(&r.body).unwrap();
    device_approve(idp, d["user_code"].as_str().unwrap());
    let form = format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&client_id=haneul-cli&device_code={}",
        d["device_code"].as_str().unwrap()
    );
    let r = request(
        idp.addr,
        "POST",
        "/token",
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(form),
    );
    let t: Value = serde_json::from_str(&r.body).unwrap();
    t["id_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no id_token: {t}"))
        .to_string()
}

/// The portal's "Sign in with ..." button in a real browser: Chromium follows the redirects to
/// the provider and back, the callback page moves on to the portal by itself, and the header
/// names the person the provider signed in (an account a group rule approves at once).
#[test]
fn portal_sign_in_in_chromium() {
    let Centre {
        idp,
        dir: _dir,
        server,
        admin,
        base,
    } = centre();
    idp.next_login("park-1", "park@uni.example", &["gpu-admins"]);
    let (_chromium, tab) = browser::launch(1000, 800);
    browser::goto(&tab, &format!("{base}/portal/signin"));
    browser::click(&tab, "a[href='/portal/oidc/uni']");
    browser::wait_js(
        &tab,
        "location.pathname + ' ' + document.body.innerText",
        "the portal, signed in as park",
        |v| {
            v.as_str()
                .is_some_and(|s| s.starts_with("/portal ") && s.contains("park"))
        },
    );
    let park = user_named(&server, &admin, "park").expect("park was provisioned");
    assert_eq!(park["role"], "org-admin");
    assert!(
        audit_actions(&server, &admin)
            .iter()
            .any(|a| a["action"] == "user.signin"),
        "the sign-in is in the audit log"
    );
}
