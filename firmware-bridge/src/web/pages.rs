//! The web page: three views (the cameras live, the timeline, search) rendered
//! by askama templates (`firmware-bridge/templates/`), one script and one style
//! sheet (`firmware-bridge/assets/`), all compiled into the binary, and the login
//! page that turns the configured token into a cookie.
//!
//! The templates render what is known when the page loads (each camera's newest
//! frame, caption, labels and label set); `app.js` then follows the cameras'
//! events, fills the timeline and search results from the JSON API, and streams
//! answers.

use askama::Template;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{constant_time_eq, WebState};
use crate::live::CameraView;

/// The cookie the login page sets; its value is the token.
pub const TOKEN_COOKIE: &str = "owlet_token";

/// How many of a camera's labels its card lists.
const LABELS_SHOWN: usize = 5;

/// Percent-encoded for a query string.
pub fn url_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            log::error!("web: a template failed: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response()
        }
    }
}

/// A camera's card as it is when the page loads.
pub struct CameraCard {
    pub name: String,
    /// One label per line, as the editor shows them.
    pub label_set: String,
    pub answers: bool,
    pub caption: String,
    /// Label and score (two decimals), best first.
    pub labels: Vec<(String, String)>,
    pub time_ms: u64,
    pub frame_id: Option<i64>,
    pub has_snapshot: bool,
}

impl CameraCard {
    fn new(v: &CameraView, has_snapshot: bool) -> CameraCard {
        let latest = v.latest.as_ref();
        CameraCard {
            name: v.camera.clone(),
            label_set: v.label_set.join("\n"),
            answers: v.answers,
            caption: latest.and_then(|l| l.caption.clone()).unwrap_or_default(),
            labels: latest
                .map(|l| {
                    l.labels.iter().take(LABELS_SHOWN).map(|(n, s)| (n.clone(), format!("{s:.2}")))
                })
                .into_iter()
                .flatten()
                .collect(),
            time_ms: latest.map_or(0, |l| l.time_ms),
            frame_id: latest.and_then(|l| l.frame_id),
            has_snapshot,
        }
    }
}

#[derive(Template)]
#[template(path = "cameras.html")]
struct CamerasPage {
    device: String,
    q: String,
    history: bool,
    cameras: Vec<CameraCard>,
}

pub async fn cameras(State(s): State<WebState>) -> Response {
    let cameras = s
        .live
        .views()
        .iter()
        .map(|v| CameraCard::new(v, s.live.snapshot(&v.camera).is_some()))
        .collect();
    render(&CamerasPage {
        device: s.device.clone(),
        q: String::new(),
        history: s.history.is_some(),
        cameras,
    })
}

#[derive(Template)]
#[template(path = "timeline.html")]
struct TimelinePage {
    device: String,
    q: String,
    history: bool,
    cameras: Vec<String>,
}

pub async fn timeline(State(s): State<WebState>) -> Response {
    render(&TimelinePage {
        device: s.device.clone(),
        q: String::new(),
        history: s.history.is_some(),
        cameras: s.inboxes.keys().cloned().collect(),
    })
}

/// The search page's own query; what it cannot read is left to the API's errors,
/// which the page shows.
#[derive(Deserialize, Default)]
pub struct SearchPageQuery {
    q: Option<String>,
}

#[derive(Template)]
#[template(path = "search.html")]
struct SearchPage {
    device: String,
    q: String,
    history: bool,
    /// Whether "every device" can be asked (the bridge has `[mqtt]`).
    fleet: bool,
}

pub async fn search(
    State(s): State<WebState>,
    q: Result<Query<SearchPageQuery>, QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    render(&SearchPage {
        device: s.device.clone(),
        q: q.q.unwrap_or_default(),
        history: s.history.is_some(),
        fleet: s.fleet.is_some(),
    })
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    device: String,
    next: String,
    wrong: bool,
}

#[derive(Deserialize, Default)]
pub struct LoginQuery {
    next: Option<String>,
}

/// Where a login may send the browser on: a path of this site, nothing else.
fn local_path(next: Option<String>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/".into(),
    }
}

pub async fn login_form(
    State(s): State<WebState>,
    q: Result<Query<LoginQuery>, QueryRejection>,
) -> Response {
    let next = local_path(q.ok().and_then(|Query(q)| q.next));
    if s.token.is_none() {
        return Redirect::to(&next).into_response();
    }
    render(&LoginPage { device: s.device.clone(), next, wrong: false })
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

pub async fn login(
    State(s): State<WebState>,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return (StatusCode::BAD_REQUEST, "the login form wants token= and next=").into_response();
    };
    let next = local_path(f.next);
    match &s.token {
        Some(want) if !constant_time_eq(f.token.trim().as_bytes(), want.as_bytes()) => {
            let mut r = render(&LoginPage { device: s.device.clone(), next, wrong: true });
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            r
        }
        Some(want) => {
            // HttpOnly: no script reads it; SameSite=Strict: no other site's page
            // sends it (with the API's JSON bodies, what stops cross-site requests).
            let cookie = format!(
                "{TOKEN_COOKIE}={want}; Path=/; HttpOnly; SameSite=Strict; Max-Age=31536000"
            );
            ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response()
        }
        None => Redirect::to(&next).into_response(),
    }
}

/// The script and the style sheet, compiled in.
pub async fn asset(Path(name): Path<String>) -> Response {
    let (body, content_type) = match name.as_str() {
        "app.js" => (include_str!("../../assets/app.js"), "text/javascript; charset=utf-8"),
        "style.css" => (include_str!("../../assets/style.css"), "text/css; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body)
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_sends_the_browser_on_only_within_the_site() {
        assert_eq!(local_path(Some("/timeline?camera=door".into())), "/timeline?camera=door");
        for away in ["//evil.example/", "https://evil.example/", "/\\evil.example", "timeline"] {
            assert_eq!(local_path(Some(away.into())), "/", "{away}");
        }
        assert_eq!(local_path(None), "/");
    }
}
