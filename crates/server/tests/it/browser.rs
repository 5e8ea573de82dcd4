//! The console in a real browser (Debian's Chromium through chromedriver): a developer creates an
//! app and applies for Talk Calendar with a screenshot, a reviewer holds the request, the developer
//! supplements it, the reviewer approves, and the developer sees the permission. Screenshots of
//! each step go to `target/e2e-artifacts/console-review-flow/`. Skipped, with a notice, where
//! Chromium is not installed.

use permgate_testkit::browser::Browser;
use permgate_testkit::{TINY_PNG, TestApp};

async fn sign_in(b: &Browser, base: &str, token: &str) {
    b.goto(&format!("{base}/")).await;
    // The page asks who is signed in before it shows anything: wait for its answer.
    if b.wait_for_any(&["Sign out", "Account token"]).await == "Sign out" {
        b.press("Sign out").await;
        b.wait_for("Account token").await;
    }
    b.fill("input[name=token]", token).await;
    b.press("Sign in").await;
    b.wait_for("Sign out").await;
}

async fn no_console_errors(b: &Browser, step: &str) {
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "the browser console has errors after {step}: {errors:#?}");
}

/// No WCAG 2 A/AA violation that axe-core can find on the page shown now.
async fn accessible(b: &Browser, page: &str) {
    if let Some(violations) = b.accessibility_violations().await {
        assert!(violations.is_empty(), "accessibility violations on {page}: {violations:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_developer_and_a_reviewer_take_a_request_from_application_to_approval() {
    let Some(b) = Browser::start("console-review-flow").await else { return };
    let t = TestApp::spawn().await;
    let (_, dev) = t.account("dana", "developer").await;
    let (_, rev) = t.account("rita", "reviewer").await;
    let base = t.base.clone();
    let screenshot = b.artifacts.join("screen.png");
    std::fs::write(&screenshot, TINY_PNG).unwrap_or_else(|e| unreachable!("{e}"));

    b.goto(&format!("{base}/")).await;
    b.wait_for("Account token").await;
    // The checker itself finds a planted fault (an input without a label), then the page is clean.
    b.eval("const i = document.createElement('input'); i.id = 'planted'; document.body.append(i);").await;
    if let Some(found) = b.accessibility_violations().await {
        assert!(found.iter().any(|v| v.starts_with("label:") && v.contains("#planted")), "{found:#?}");
    }
    b.eval("document.getElementById('planted').remove();").await;
    accessible(&b, "the sign-in page").await;

    // The developer creates an app and sets the consent item the feature uses.
    sign_in(&b, &base, &dev).await;
    b.screenshot("apps").await;
    b.fill("input[name=name]", "Calendar Shop").await;
    b.fill("input[name=company_name]", "Example Co").await;
    b.fill("input[name=category]", "shopping").await;
    b.press("Create app").await;
    b.wait_for("Consent items").await;
    b.fill("input[aria-label='Purpose of talk_calendar']", "add events to the user's calendar").await;
    let set =
        b.find_xpath("//input[@aria-label='Purpose of talk_calendar']/ancestor::form//button[@type='submit']").await;
    b.click(&set).await;
    b.wait_for("set: optional").await;
    b.screenshot("app").await;
    accessible(&b, "the app page").await;
    no_console_errors(&b, "creating the app").await;

    // ... agrees to the eligibility terms and applies with a screenshot.
    let apply = b
        .find_xpath(
            "//div[contains(@class,'card')][.//span[normalize-space()='talk_calendar']]//a[normalize-space()='Apply']",
        )
        .await;
    b.click(&apply).await;
    b.press("I agree").await;
    b.wait_for("Submit application").await;
    b.fill("input[name=service_url]", "https://calendar.example.com").await;
    b.fill("textarea[name=reason]", "Users add our events to their Talk Calendar").await;
    b.fill("input[name=file]", &screenshot.display().to_string()).await;
    b.screenshot("application-form").await;
    accessible(&b, "the application form").await;
    b.press("Submit application").await;
    b.wait_for("History").await;
    let hash = b.eval("return location.hash").await;
    let request: String = hash.as_str().unwrap_or_default().trim_start_matches("#/requests/").to_owned();
    assert!(request.parse::<i64>().is_ok(), "not on a request page: {hash}");
    b.screenshot("submitted").await;
    no_console_errors(&b, "applying").await;

    // The reviewer starts the review and puts the request on hold.
    sign_in(&b, &base, &rev).await;
    b.wait_for("Review queue").await;
    accessible(&b, "the review queue").await;
    b.goto(&format!("{base}/#/shadow")).await;
    b.wait_for("No call in the decision log was allowed by shadow mode").await;
    accessible(&b, "the shadow-mode report").await;
    b.goto(&format!("{base}/#/requests")).await;
    b.wait_for("Review queue").await;
    let link = b.find_xpath(&format!("//a[normalize-space()='#{request}']")).await;
    b.click(&link).await;
    b.wait_for("Evidence").await;
    // An app that has made no call says so, rather than showing an empty table.
    b.wait_for("No call of this app has been counted against a quota rule").await;
    let shown = b.eval("const i = document.querySelector('.evidence img'); return i ? i.naturalWidth : -1").await;
    assert_eq!(shown, 1, "the evidence image is shown in the page");
    b.press("Start review").await;
    b.wait_for("Put on hold").await;
    accessible(&b, "the reviewer's request page").await;
    b.fill("input[name=comment][required]", "Show the screen where events are added").await;
    b.press("Hold").await;
    // The history's new entry, not the "Put on hold" heading that was there before.
    b.wait_for("Reason: ").await;
    b.screenshot("on-hold").await;
    no_console_errors(&b, "holding").await;

    // The developer supplements it.
    sign_in(&b, &base, &dev).await;
    b.goto(&format!("{base}/#/requests/{request}")).await;
    b.wait_for("Supplement").await;
    b.fill("input[name=comment]", "Added the event page to the scenario").await;
    b.press("Supplement").await;
    b.wait_for("Note: Added the event page").await;

    // The reviewer approves.
    sign_in(&b, &base, &rev).await;
    b.goto(&format!("{base}/#/requests/{request}")).await;
    b.press("Start review").await;
    b.press("Approve").await;
    b.wait_for("Revoke the grant").await;
    b.screenshot("approved").await;

    // The developer sees the permission held, from the review.
    sign_in(&b, &base, &dev).await;
    let app = b.find_xpath("//a[normalize-space()='Calendar Shop']").await;
    b.click(&app).await;
    b.wait_for("Permissions held").await;
    let held = b.find_xpath("//h2[normalize-space()='Permissions held']/following-sibling::table[1]").await;
    let _ = held;
    let text = b.text().await;
    assert!(text.contains("talk_calendar\treview") || text.contains("talk_calendar review"), "{text}");
    b.screenshot("permission-held").await;

    // ... and asks why a Moment call would be denied.
    b.fill("input[name=path]", "/openapi/v4/adAccounts/pages").await;
    b.press("Explain").await;
    b.wait_for("denied -5").await;
    let text = b.text().await;
    assert!(text.contains("the app lacks `kakao_moment` (-5)"), "{text}");
    assert!(text.contains("apply for `kakao_moment` with POST /v1/apps/"), "{text}");
    b.screenshot("explain").await;
    accessible(&b, "the app page with an explanation").await;
    no_console_errors(&b, "the whole flow").await;

    // The session ends behind the page's back (signed out in another tab): the next page the
    // developer opens says so, on the sign-in page, instead of an error under the old page.
    b.eval_async("fetch('/v1/session', { method: 'DELETE' }).then(() => arguments[0](true))").await;
    let apps = b.find_xpath("//nav//a[normalize-space()='Apps']").await;
    b.click(&apps).await;
    b.wait_for("Your session has ended: sign in again.").await;
    b.wait_for("Account token").await;
}
