//! Headless Chromium for the portal's browser tests, over the DevTools protocol
//! (`headless_chrome`): finding and launching the browser, waiting for the page, and laying the
//! tab out as a screen of a given size. Included by the tests that drive a browser only
//! (`#[path]` in them), so the other test binaries do not compile or link it.

use headless_chrome::protocol::cdp::Emulation;
use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};
use serde_json::Value;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The Chromium to drive: `HANEUL_CHROMIUM`, else the first of the usual names on `PATH`;
/// fails naming the fix when there is none.
pub fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("HANEUL_CHROMIUM") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "HANEUL_CHROMIUM={} is not a file", p.display());
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "no Chromium found for the portal browser test: install it \
         (`DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium`; .ci/run does) \
         or set HANEUL_CHROMIUM to a Chromium or Chrome binary"
    );
}

/// Starts headless Chromium with a window `width` x `height` and English as its language, and
/// opens one tab (15 s default timeout). Keep the browser alive as long as the tab is used.
pub fn launch(width: u32, height: u32) -> (Browser, Arc<Tab>) {
    let browser = Browser::new(
        LaunchOptions::default_builder()
            .path(Some(chromium()))
            .headless(true)
            .sandbox(false)
            .window_size(Some((width, height)))
            .idle_browser_timeout(Duration::from_secs(60))
            .args(vec![
                OsStr::new("--lang=en-US"),
                OsStr::new("--disable-gpu"),
            ])
            .build()
            .unwrap(),
    )
    .expect("launch chromium");
    let tab = browser.new_tab().expect("a tab");
    tab.set_default_timeout(Duration::from_secs(15));
    (browser, tab)
}

/// Evaluates `js` until it gives a value that `ok` accepts; fails with the last value.
pub fn wait_js(tab: &Tab, js: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let v = tab
            .evaluate(js, false)
            .ok()
            .and_then(|r| r.value)
            .unwrap_or(Value::Null);
        if ok(&v) {
            return v;
        }
        assert!(
            Instant::now() < until,
            "timed out waiting for {what}; last: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn text_of(tab: &Tab, selector: &str) -> String {
    let js = format!(
        "(() => {{ const e = document.querySelector({selector:?}); return e ? e.innerText : null }})()"
    );
    wait_js(tab, &js, selector, Value::is_string)
        .as_str()
        .unwrap()
        .to_string()
}

pub fn wait_text(tab: &Tab, selector: &str, want: &str) {
    let js = format!(
        "(() => {{ const e = document.querySelector({selector:?}); return e ? e.innerText : null }})()"
    );
    wait_js(tab, &js, &format!("{selector} to show {want:?}"), |v| {
        v.as_str().is_some_and(|s| s.contains(want))
    });
}

pub fn goto(tab: &Tab, url: &str) {
    tab.navigate_to(url).expect("navigate");
    tab.wait_until_navigated().expect("page loads");
}

pub fn click(tab: &Tab, selector: &str) {
    tab.wait_for_element(selector)
        .unwrap_or_else(|e| panic!("{selector}: {e}"))
        .click()
        .unwrap_or_else(|e| panic!("click {selector}: {e}"));
}

pub fn fill(tab: &Tab, selector: &str, value: &str) {
    tab.wait_for_element(selector)
        .unwrap_or_else(|e| panic!("{selector}: {e}"));
    let js = format!("document.querySelector({selector:?}).value = {value:?}");
    tab.evaluate(&js, false).expect("fill");
}

pub fn shot(tab: &Tab, dir: &Path, name: &str) {
    let png = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .expect("screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
}

/// Back to the window's own size after [`viewport`].
pub fn desktop(tab: &Tab) {
    tab.call_method(Emulation::ClearDeviceMetricsOverride(None))
        .expect("desktop viewport");
}

/// A phone's screen, 390 x 844.
pub fn phone_viewport() -> Emulation::SetDeviceMetricsOverride {
    viewport(390, 844)
}

/// The tab laid out as a screen `width` px wide; below 600 px, as a phone.
pub fn viewport(width: u32, height: u32) -> Emulation::SetDeviceMetricsOverride {
    let mobile = width < 600;
    Emulation::SetDeviceMetricsOverride {
        width,
        height,
        device_scale_factor: if mobile { 2.0 } else { 1.0 },
        mobile,
        scale: None,
        screen_width: None,
        screen_height: None,
        position_x: None,
        position_y: None,
        dont_set_visible_size: None,
        screen_orientation: None,
        viewport: None,
        display_feature: None,
        device_posture: None,
    }
}
