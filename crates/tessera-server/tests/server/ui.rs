//! The web UI over real HTTP: pages render (and escape what users wrote), forms start and
//! control tasks through the API's own paths, CSRF and sign-in are enforced, a user sees only
//! its own tasks, and live streams resume after a reconnection without a gap.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tessera_server::Limits;

use super::support::*;

const HOSTILE: &str = r#"
nodes:
  - id: in
    type: entry
    api:
      route: hostile
      body: {name: "x", n: 1, ok: true, tags: ["a"]}
      summary: "<script>alert('summary')</script>"
      description: "<img src=x onerror=alert(1)> & more"
    next: [work]
  - {id: work, type: node, after: "out = #{greeting: \"<b>hi</b> \" + input.name, n: input.n * 2, ok: input.ok, tags: input.tags};", next: [end]}
  - {id: end, type: end}
"#;

/// A browser's session: its cookies, sent back as a browser would.
#[derive(Default)]
struct Browser {
    cookies: Vec<(String, String)>,
}

impl Browser {
    fn remember(&mut self, r: &reqwest::Response) {
        for v in r.headers().get_all("set-cookie") {
            let text = v.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            let (k, val) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != k);
            if !text.contains("Max-Age=0") {
                self.cookies.push((k.to_string(), val.to_string()));
            }
        }
    }

    fn header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn csrf(&self) -> String {
        self.cookies
            .iter()
            .find(|(k, _)| k == "tessera_csrf")
            .map(|(_, v)| v.clone())
            .expect("the UI set its CSRF cookie")
    }

    async fn get(&mut self, f: &Fixture, path: &str) -> (u16, String, reqwest::header::HeaderMap) {
        let r = no_redirects()
            .get(f.url(path))
            .header("cookie", self.header())
            .send()
            .await
            .unwrap();
        self.remember(&r);
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        (status, r.text().await.unwrap(), headers)
    }

    async fn post_form(
        &mut self,
        f: &Fixture,
        path: &str,
        fields: &[(&str, &str)],
    ) -> (u16, String, reqwest::header::HeaderMap) {
        let r = no_redirects()
            .post(f.url(path))
            .header("cookie", self.header())
            .form(fields)
            .send()
            .await
            .unwrap();
        self.remember(&r);
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        (status, r.text().await.unwrap(), headers)
    }
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn location(h: &reqwest::header::HeaderMap) -> String {
    h.get("location").unwrap().to_str().unwrap().to_string()
}

#[tokio::test]
async fn pages_render_and_escape_what_users_wrote() {
    let f = start().await;
    assert_eq!(f.post_yaml(HOSTILE).await.0, 201);
    let mut b = Browser::default();
    let (status, html, headers) = b.get(&f, "/").await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    assert!(html.contains("href=\"/ui/pipelines/hostile\""), "{html}");
    assert!(
        !html.contains("<script>alert"),
        "a summary is escaped: {html}"
    );
    assert!(html.contains("&lt;script&gt;alert(&#39;summary&#39;)&lt;/script&gt;"));
    let (status, html, _) = b.get(&f, "/ui/pipelines/hostile").await;
    assert_eq!(status, 200);
    assert!(!html.contains("<img src=x"), "{html}");
    assert!(
        html.contains("class=\"pipeline-graph\""),
        "the graph is drawn"
    );
    assert!(html.contains("data-node=\"work\""));
    assert!(
        html.contains("id=\"node-work\""),
        "each node's definition has its anchor"
    );
    assert!(
        html.contains("route: hostile"),
        "the definition is shown as YAML"
    );
    let (status, html, _) = b.get(&f, "/ui/pipelines/hostile?format=json").await;
    assert_eq!(status, 200);
    assert!(html.contains("&quot;route&quot;: &quot;hostile&quot;"));
    // Unknown things are HTML pages with the API's message, not JSON.
    let (status, html, _) = b.get(&f, "/ui/pipelines/nope").await;
    assert_eq!(status, 404);
    assert!(html.contains("pipeline `nope` not found"), "{html}");
    let (status, _, _) = b.get(&f, "/ui/tasks/nope").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_task_started_from_the_form_lands_on_its_page_with_its_result() {
    let f = start().await;
    assert_eq!(f.post_yaml(HOSTILE).await.0, 201);
    let mut b = Browser::default();
    let (status, html, _) = b.get(&f, "/ui/pipelines/hostile/run").await;
    assert_eq!(status, 200);
    // Typed fields from the example.
    assert!(html.contains("name=\"f.name\" type=\"text\""), "{html}");
    assert!(html.contains("name=\"f.n\" type=\"number\""));
    assert!(html.contains("name=\"f.ok\" type=\"checkbox\""));
    assert!(html.contains("name=\"f.tags\""));
    let csrf = b.csrf();
    let path = format!("/ui/pipelines/hostile/run?csrf={csrf}");
    let (status, _, headers) = b
        .post_form(
            &f,
            &path,
            &[
                ("f.name", "<i>ann</i>"),
                ("f.n", "21"),
                ("f.ok", "false"),
                ("f.tags", "[\"x\", \"y\"]"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    let to = location(&headers);
    let id = to
        .strip_prefix("/ui/tasks/")
        .expect("lands on the task page")
        .to_string();
    let doc = f.wait_task(&id).await;
    assert_eq!(doc["state"], "finished", "{doc}");
    let (_, result) = f.get(&format!("/api/v1/tasks/{id}/result")).await;
    assert_eq!(
        result,
        json!({"greeting": "<b>hi</b> <i>ann</i>", "n": 42, "ok": false, "tags": ["x", "y"]})
    );
    let (status, html, _) = b.get(&f, &to).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("<span class=\"badge s-finished\">finished</span>"),
        "{html}"
    );
    assert!(html.contains("id=\"result\""));
    assert!(
        html.contains("&lt;b&gt;hi&lt;/b&gt;"),
        "the result is escaped"
    );
    assert!(!html.contains("<i>ann</i>"));
    let work = html
        .split("<g class=\"node\" data-node=\"work\"")
        .nth(1)
        .and_then(|rest| rest.split('>').next())
        .expect("the graph draws node work");
    assert!(work.contains("data-state=\"finished\""), "{work}");
    // A field of the wrong type: the form again, naming it.
    let (status, html, _) = b
        .post_form(
            &f,
            &path,
            &[("f.name", "a"), ("f.n", "two"), ("f.tags", "[")],
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        html.contains("<code>n</code>: `two` is not a whole number"),
        "{html}"
    );
    assert!(html.contains("<code>tags</code>: not JSON"), "{html}");
    assert!(
        html.contains("value=\"two\""),
        "the form keeps what was sent"
    );
}

#[tokio::test]
async fn forms_without_the_pages_csrf_token_or_from_elsewhere_are_refused() {
    let f = start().await;
    assert_eq!(f.post_yaml(HOSTILE).await.0, 201);
    let mut b = Browser::default();
    b.get(&f, "/").await;
    let csrf = b.csrf();
    // No token, a wrong one, the right one from another site.
    for (path, origin) in [
        ("/ui/pipelines/hostile/run".to_string(), None),
        ("/ui/pipelines/hostile/run?csrf=0000".to_string(), None),
        (
            format!("/ui/pipelines/hostile/run?csrf={csrf}"),
            Some("http://evil.example"),
        ),
    ] {
        let mut req = no_redirects()
            .post(f.url(&path))
            .header("cookie", b.header())
            .form(&[("f.name", "x")]);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 403, "{path} {origin:?}");
        assert!(r.text().await.unwrap().contains("CSRF"));
    }
    let (_, tasks) = f.get("/api/v1/tasks").await;
    assert_eq!(
        tasks["items"].as_array().unwrap().len(),
        0,
        "nothing started"
    );
}

#[tokio::test]
async fn sign_in_keeps_the_token_in_an_http_only_cookie_and_users_see_only_their_tasks() {
    let other = "user:u2:user2-secret-0123456789";
    let f = start_with(&[ADMIN, USER, other], Limits::default()).await;
    assert_eq!(f.post_yaml_as(ADMIN, HOSTILE).await, 201);
    let body = json!({"name": "a", "n": 1, "ok": true, "tags": []});
    let mine = f.run_as(USER, "hostile", &body).await;
    let theirs = f.run_as(other, "hostile", &body).await;
    let mut b = Browser::default();
    // Not signed in: sent to the sign-in form, back here afterwards.
    let (status, _, headers) = b.get(&f, "/ui/engine").await;
    assert_eq!(status, 303);
    assert_eq!(location(&headers), "/ui/login?next=%2Fui%2Fengine");
    let (status, html, _) = b.get(&f, "/ui/login?next=/ui/engine").await;
    assert_eq!(status, 200);
    assert!(html.contains("type=\"password\""));
    let csrf = b.csrf();
    let (status, html, _) = b
        .post_form(
            &f,
            "/ui/login",
            &[
                ("csrf", &csrf),
                ("token", "wrong-secret-0123456789"),
                ("next", "/ui/engine"),
            ],
        )
        .await;
    assert_eq!(status, 401);
    assert!(html.contains("this token is not known"));
    let (status, _, headers) = b
        .post_form(
            &f,
            "/ui/login",
            &[
                ("csrf", &csrf),
                ("token", secret(USER)),
                ("next", "//evil.example"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(location(&headers), "/", "never to another site");
    let set = headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("tessera_token="))
        .unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(
        !set.contains(secret(USER)),
        "the secret is not stored as it is typed"
    );
    // Signed in as u1: its task, not u2's (a 404, as the API says).
    let mine = mine["id"].as_str().unwrap();
    let theirs = theirs["id"].as_str().unwrap();
    let (status, html, _) = b.get(&f, &format!("/ui/tasks/{mine}")).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("u1 (user)"), "who is signed in is shown");
    let (status, _, _) = b.get(&f, &format!("/ui/tasks/{theirs}")).await;
    assert_eq!(status, 404);
    let (_, html, _) = b.get(&f, "/ui/pipelines/hostile").await;
    assert!(
        html.contains(mine) && !html.contains(theirs),
        "its own tasks only"
    );
    // The cookie opens the API's reads, never its writes.
    let r = no_redirects()
        .get(f.url(&format!("/api/v1/tasks/{mine}")))
        .header("cookie", b.header())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = no_redirects()
        .post(f.url("/api/v1/services/hostile"))
        .header("cookie", b.header())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        401,
        "a cross-site form cannot use the cookie"
    );
    // Signing out forgets it.
    let csrf = b.csrf();
    let (status, _, _) = b.post_form(&f, "/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    let (status, _, _) = b.get(&f, &format!("/ui/tasks/{mine}")).await;
    assert_eq!(status, 303);
}

/// One server-sent event.
#[derive(Debug)]
struct Sse {
    event: String,
    id: Option<String>,
    data: String,
}

/// Reads events from an SSE response until `stop` says so (or 20 s pass).
async fn read_events(r: reqwest::Response, mut stop: impl FnMut(&Sse, usize) -> bool) -> Vec<Sse> {
    let mut stream = r.bytes_stream();
    let mut buf = String::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let Ok(Some(chunk)) = tokio::time::timeout(Duration::from_secs(20), stream.next()).await
        else {
            break;
        };
        buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let mut ev = Sse {
                event: "message".into(),
                id: None,
                data: String::new(),
            };
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    ev.event = v.trim().into();
                } else if let Some(v) = line.strip_prefix("id:") {
                    ev.id = Some(v.trim().into());
                } else if let Some(v) = line.strip_prefix("data:") {
                    ev.data.push_str(v.trim_start());
                }
            }
            if frame.lines().all(|l| l.starts_with(':') || l.is_empty()) {
                continue;
            }
            let done = stop(&ev, out.len() + 1);
            out.push(ev);
            if done {
                return out;
            }
        }
    }
    out
}

#[tokio::test]
async fn a_live_log_resumes_after_the_last_line_received_without_a_gap() {
    let f = start().await;
    let yaml = "nodes:\n  - {id: in, type: entry, api: {route: talk}, next: [talk]}\n  - {id: talk, type: command, shell: true, command: \"for i in 1 2 3 4 5 6 7 8; do echo line$i; sleep 0.25; done; echo '{}'\", next: [end]}\n  - {id: end, type: end}\n";
    assert_eq!(f.post_yaml(yaml).await.0, 201);
    let (_, started) = f.submit("talk", json!({})).await;
    let id = started["task_id"].as_str().unwrap().to_string();
    let url = f.url(&format!("/ui/tasks/{id}/nodes/talk/log/live"));
    // Three lines, then the connection drops.
    let first = read_events(reqwest::get(&url).await.unwrap(), |_, n| n == 3).await;
    let texts: Vec<String> = first
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(&e.data).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(texts, ["line1", "line2", "line3"]);
    let last = first[2].id.clone().expect("lines carry their number");
    // The browser reconnects with the last id it saw: the rest, once each, then the end.
    let r = reqwest::Client::new()
        .get(&url)
        .header("last-event-id", &last)
        .send()
        .await
        .unwrap();
    let rest = read_events(r, |e, _| e.event == "end").await;
    let texts: Vec<String> = rest
        .iter()
        .filter(|e| e.event == "line")
        .map(|e| {
            serde_json::from_str::<Value>(&e.data).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        texts,
        ["line4", "line5", "line6", "line7", "line8", "{}"],
        "no gap, no repeat"
    );
    assert_eq!(rest.last().unwrap().event, "end");
    let ids: Vec<u64> = rest
        .iter()
        .filter_map(|e| e.id.as_ref()?.parse().ok())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "increasing: {ids:?}");
}

#[tokio::test]
async fn a_task_page_follows_its_state_to_the_end_and_a_reconnection_gets_the_current_state() {
    let f = start().await;
    let yaml = "nodes:\n  - {id: in, type: entry, api: {route: slow}, next: [a]}\n  - {id: a, type: command, shell: true, command: \"sleep 0.4; echo '{}'\", next: [b]}\n  - {id: b, type: command, shell: true, command: \"sleep 0.4; echo '{}'\", next: [end]}\n  - {id: end, type: end}\n";
    assert_eq!(f.post_yaml(yaml).await.0, 201);
    let (_, started) = f.submit("slow", json!({})).await;
    let id = started["task_id"].as_str().unwrap().to_string();
    let url = f.url(&format!("/ui/tasks/{id}/live"));
    let events = read_events(reqwest::get(&url).await.unwrap(), |e, _| {
        let s: Value = serde_json::from_str(&e.data).unwrap();
        s["state"] == "finished"
    })
    .await;
    assert!(events.len() >= 2, "several snapshots: {events:?}");
    let states: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    let last = states.last().unwrap();
    assert_eq!(last["state"], "finished");
    assert!(
        last["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["state"] == "finished"),
        "{last}"
    );
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e.id.as_ref().unwrap().parse().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "{seqs:?}");
    // A page reconnecting after the end gets the final state at once, then the stream ends.
    let r = reqwest::Client::new()
        .get(&url)
        .header("last-event-id", seqs[0].to_string())
        .send()
        .await
        .unwrap();
    let again = read_events(r, |_, _| false).await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&again[0].data).unwrap()["state"],
        "finished"
    );
}

#[tokio::test]
async fn the_engine_page_shows_totals_and_its_live_figures() {
    let f = start().await;
    assert_eq!(f.post_yaml(HOSTILE).await.0, 201);
    f.submit(
        "hostile",
        json!({"name": "a", "n": 1, "ok": true, "tags": []}),
    )
    .await;
    let mut b = Browser::default();
    let (status, html, _) = b.get(&f, "/ui/engine").await;
    assert_eq!(status, 200);
    assert!(html.contains("data-total=\"finished\"") || html.contains("data-total=\"running\""));
    assert!(html.contains("id=\"workers\""));
    let r = reqwest::get(f.url("/ui/engine/live")).await.unwrap();
    let events = read_events(r, |_, n| n == 1).await;
    assert_eq!(events[0].event, "engine");
    let figures: Value = serde_json::from_str(&events[0].data).unwrap();
    assert!(
        figures["totals"]["finished"].as_u64().is_some(),
        "{figures}"
    );
    assert!(figures["pipelines"]["hostile"].is_object(), "{figures}");
}

#[tokio::test]
async fn an_uploaded_page_never_runs_as_this_sites_page() {
    let f = start().await;
    let yaml = "nodes:\n  - {id: in, type: entry, api: {route: keep, body: [doc, pic]}, next: [end]}\n  - {id: end, type: end}\n";
    assert_eq!(f.post_yaml(yaml).await.0, 201);
    let form = reqwest::multipart::Form::new()
        .part(
            "doc",
            reqwest::multipart::Part::bytes(b"<script>fetch('/ui/engine')</script>".to_vec())
                .file_name("page.html")
                .mime_str("text/html")
                .unwrap(),
        )
        .part(
            "pic",
            reqwest::multipart::Part::bytes(vec![0x89, b'P', b'N', b'G'])
                .file_name("pic.png")
                .mime_str("image/png")
                .unwrap(),
        );
    let id = f.submit_form("keep", form).await;
    f.wait_task(&id).await;
    let (_, result) = f.get(&format!("/api/v1/tasks/{id}/result")).await;
    for (field, disposition) in [("doc", "attachment"), ("pic", "inline")] {
        let url = result[field]["url"].as_str().unwrap();
        let r = reqwest::get(f.url(url)).await.unwrap();
        let h = r.headers();
        assert!(
            h["content-disposition"]
                .to_str()
                .unwrap()
                .starts_with(disposition),
            "{field}: {h:?}"
        );
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("sandbox")
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
    }
}

#[tokio::test]
async fn only_an_admin_resumes_with_a_changed_definition() {
    let f = with_tokens().await;
    let yaml = "nodes:\n  - {id: in, type: entry, api: {route: fails}, next: [work]}\n  - {id: work, type: command, command: [\"false\"], next: [end]}\n  - {id: end, type: end}\n";
    assert_eq!(f.post_yaml_as(ADMIN, yaml).await, 201);
    let doc = f.run_as(USER, "fails", &json!({})).await;
    assert_eq!(doc["state"], "failed");
    let id = doc["id"].as_str().unwrap();
    let fixed = yaml
        .replace("[\\\"false\\\"]", "[\\\"true\\\"]")
        .replace("[\"false\"]", "[\"true\"]");
    let r = f
        .http
        .post(f.url(&format!("/api/v1/tasks/{id}/resume")))
        .bearer_auth(secret(USER))
        .json(&json!({"pipeline": fixed}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403, "a user cannot bring new commands");
    assert!(r.text().await.unwrap().contains("admin role"));
    // The task's own definition sent again (a form's untouched box), or a blank one, changes
    // nothing: a user may.
    for same in [json!(yaml), json!("")] {
        let r = f
            .http
            .post(f.url(&format!("/api/v1/tasks/{id}/resume")))
            .bearer_auth(secret(USER))
            .json(&json!({ "pipeline": same }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202, "{same}");
        let start = Instant::now();
        while f.get_as(USER, &format!("/api/v1/tasks/{id}")).await.1["state"] != "failed"
            && start.elapsed() < Duration::from_secs(20)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let r = f
        .http
        .post(f.url(&format!("/api/v1/tasks/{id}/resume")))
        .bearer_auth(secret(ADMIN))
        .json(&json!({"pipeline": fixed}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let (_, doc) = f.get_as(ADMIN, &format!("/api/v1/tasks/{id}")).await;
    let start = Instant::now();
    let mut doc = doc;
    while doc["state"] != "finished" && start.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        doc = f.get_as(ADMIN, &format!("/api/v1/tasks/{id}")).await.1;
    }
    assert_eq!(doc["state"], "finished", "{doc}");
}

#[tokio::test]
async fn odd_requests_get_html_error_pages_never_a_500() {
    let f = start_with(&[ADMIN], Limits::default()).await;
    let mut b = Browser::default();
    for (path, status) in [
        ("/ui/nope", 404),
        ("/ui/pipelines/", 404),
        ("/ui/login?next=/%0A/x", 200),
    ] {
        let (got, html, headers) = b.get(&f, path).await;
        assert_eq!(got, status, "{path}: {html}");
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{path}"
        );
    }
    let csrf = b.csrf();
    // A `next` with control characters or a backslash goes home, never elsewhere (nor a 500).
    for next in ["/\n/x", "/\t/evil.example", "/\\evil.example"] {
        let (status, _, headers) = b
            .post_form(
                &f,
                "/ui/login",
                &[("csrf", &csrf), ("token", secret(ADMIN)), ("next", next)],
            )
            .await;
        assert_eq!(status, 303, "{next:?}");
        assert_eq!(location(&headers), "/", "{next:?}");
    }
    for (method, path, status) in [
        (reqwest::Method::GET, "/?page=abc", 400),
        (reqwest::Method::GET, "/ui/logout", 405),
        (reqwest::Method::PUT, "/ui/engine", 405),
    ] {
        let r = no_redirects()
            .request(method.clone(), f.url(path))
            .header("cookie", b.header())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{method} {path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn a_batch_tasks_page_shows_its_chunks_and_skipped_lines() {
    let f = start().await;
    let yaml = r#"
nodes:
  - {id: in, type: entry, api: {route: orders}, next: [make]}
  - id: make
    type: command
    shell: true
    command: |
      printf 'id,amount\n1,12\n2,7\n3,n/a\n4,30\n5,2\n' > "$TESSERA_SCRATCH/orders.csv"
      printf '{"csv": {"$file": "%s"}}' "$TESSERA_SCRATCH/orders.csv"
    next: [cents]
  - id: cents
    type: batch
    reader: {format: csv, object: make.out.csv}
    processor:
      columns: {cents: "parse_int(row.amount) * 100"}
    writer: {format: csv, object: true}
    chunk_size: 2
    parallelism: 1
    skip: {limit: 1}
    next: [end]
  - {id: end, type: end}
"#;
    assert_eq!(f.post_yaml(yaml).await.0, 201);
    let (_, started) = f.submit("orders", json!({})).await;
    let id = started["task_id"].as_str().unwrap().to_string();
    assert_eq!(f.wait_task(&id).await["state"], "finished");
    let mut b = Browser::default();
    let (status, html, _) = b.get(&f, &format!("/ui/tasks/{id}")).await;
    assert_eq!(status, 200);
    let batch = html
        .split("id=\"batches\"")
        .nth(1)
        .expect("a batches section");
    assert!(batch.contains("3 of 3 chunks committed"), "{batch}");
    assert!(batch.contains("5 read · 4 written · 1 skipped"), "{batch}");
    assert!(
        batch.contains("line 4"),
        "the skipped line by its number: {batch}"
    );
}

#[tokio::test]
async fn an_admin_pauses_and_resumes_a_schedule_from_its_page() {
    let f = with_tokens().await;
    let yaml = "schedule: {cron: \"0 3 * * *\"}\nnodes:\n  - {id: in, type: entry, api: {route: nightly}, next: [end]}\n  - {id: end, type: end}\n";
    assert_eq!(f.post_yaml_as(ADMIN, yaml).await, 201);
    let mut admin = Browser::default();
    admin
        .cookies
        .push(("tessera_token".into(), hex_of(secret(ADMIN))));
    let (status, html, _) = admin.get(&f, "/ui/pipelines/nightly").await;
    assert_eq!(status, 200);
    assert!(html.contains("<code>0 3 * * *</code>"), "{html}");
    assert!(html.contains("Pause the schedule"));
    let csrf = admin.csrf();
    let (status, _, _) = admin
        .post_form(
            &f,
            "/ui/pipelines/nightly/schedule",
            &[("csrf", &csrf), ("action", "pause")],
        )
        .await;
    assert_eq!(status, 303);
    let (_, html, _) = admin.get(&f, "/ui/pipelines/nightly").await;
    assert!(
        html.contains("s-paused") && html.contains("Resume the schedule"),
        "{html}"
    );
    let (_, list, _) = admin.get(&f, "/").await;
    assert!(
        list.contains("<span class=\"badge s-paused\">paused</span>"),
        "{list}"
    );
    // A user sees the schedule but has no button, and its post is refused.
    let mut user = Browser::default();
    user.cookies
        .push(("tessera_token".into(), hex_of(secret(USER))));
    let (_, html, _) = user.get(&f, "/ui/pipelines/nightly").await;
    assert!(!html.contains("Resume the schedule"));
    let csrf = user.csrf();
    let (status, _, _) = user
        .post_form(
            &f,
            "/ui/pipelines/nightly/schedule",
            &[("csrf", &csrf), ("action", "resume")],
        )
        .await;
    assert_eq!(status, 403);
    let (status, _, _) = admin
        .post_form(
            &f,
            "/ui/pipelines/nightly/schedule",
            &[("csrf", &admin.csrf()), ("action", "resume")],
        )
        .await;
    assert_eq!(status, 303);
    let (_, html, _) = admin.get(&f, "/ui/pipelines/nightly").await;
    assert!(html.contains("Pause the schedule"));
}

fn hex_of(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn many_pages_following_one_task_all_see_it_end() {
    let f = start().await;
    let yaml = "nodes:\n  - {id: in, type: entry, api: {route: nap}, next: [a]}\n  - {id: a, type: command, shell: true, command: \"sleep 0.5; echo '{}'\", next: [end]}\n  - {id: end, type: end}\n";
    assert_eq!(f.post_yaml(yaml).await.0, 201);
    let (_, started) = f.submit("nap", json!({})).await;
    let id = started["task_id"].as_str().unwrap().to_string();
    let url = f.url(&format!("/ui/tasks/{id}/live"));
    let followers = (0..12).map(|_| {
        let url = url.clone();
        tokio::spawn(async move {
            let events = read_events(reqwest::get(&url).await.unwrap(), |e, _| {
                serde_json::from_str::<Value>(&e.data).unwrap()["state"] == "finished"
            })
            .await;
            serde_json::from_str::<Value>(&events.last().unwrap().data).unwrap()["state"].clone()
        })
    });
    for follower in followers.collect::<Vec<_>>() {
        assert_eq!(follower.await.unwrap(), "finished");
    }
}

#[tokio::test]
async fn a_service_called_in_a_nested_loop_and_never_announced_is_unavailable() {
    let f = start().await;
    let yaml = "nodes:\n  - {id: in, type: entry, api: {route: deep, body: {xs: [[1]]}}, next: [outer]}\n  - id: outer\n    type: loop\n    items: in.out.xs\n    next: [end]\n    nodes:\n      - id: inner\n        type: loop\n        items: loop.item\n        nodes:\n          - {id: call, type: service, service: faces/detect}\n  - {id: end, type: end}\n";
    assert_eq!(f.post_yaml(yaml).await.0, 201, "{yaml}");
    let mut b = Browser::default();
    for path in ["/", "/ui/pipelines/deep"] {
        let (_, html, _) = b.get(&f, path).await;
        assert!(
            html.contains("s-unavailable") && html.contains("faces/detect (not announced)"),
            "{path}: {html}"
        );
    }
}
