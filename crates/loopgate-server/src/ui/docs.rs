//! The reference documents (README and docs/*.md), compiled into the
//! binary and served as HTML at `/docs` and `/docs/{name}`, so every link
//! loopgate prints (a problem's `type`, the UI, the CLI, emails) resolves on
//! the server that printed it, offline and at the version that runs.
//!
//! Rendered once, on first use, with pulldown-cmark. Headings get GitHub's
//! anchors (`## validation_failed` is `#validation_failed`), and links
//! between the documents are rewritten to their `/docs/…` address; a link to
//! a file that is not served (source code, the SDK's README) keeps its text
//! and loses the link.

use std::collections::HashMap;
use std::sync::LazyLock;

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pulldown_cmark::{CowStr, Event, HeadingLevel, Options, Parser, Tag, TagEnd};

use crate::http::extract::Path;
use crate::ui::{UiError, assets};

/// A served document: its name in `/docs/{name}` and its Markdown.
struct Source {
    name: &'static str,
    markdown: &'static str,
}

/// Every served document; `index` is the README.
const SOURCES: &[Source] = &[
    Source {
        name: "index",
        markdown: include_str!("../../../../README.md"),
    },
    Source {
        name: "api",
        markdown: include_str!("../../../../docs/api.md"),
    },
    Source {
        name: "errors",
        markdown: include_str!("../../../../docs/errors.md"),
    },
    Source {
        name: "policies",
        markdown: include_str!("../../../../docs/policies.md"),
    },
    Source {
        name: "audit",
        markdown: include_str!("../../../../docs/audit.md"),
    },
    Source {
        name: "analytics",
        markdown: include_str!("../../../../docs/analytics.md"),
    },
    Source {
        name: "operations",
        markdown: include_str!("../../../../docs/operations.md"),
    },
    Source {
        name: "security",
        markdown: include_str!("../../../../docs/security.md"),
    },
    Source {
        name: "integrations",
        markdown: include_str!("../../../../docs/integrations.md"),
    },
    Source {
        name: "notifications",
        markdown: include_str!("../../../../docs/notifications.md"),
    },
    Source {
        name: "sso",
        markdown: include_str!("../../../../docs/sso.md"),
    },
];

/// The one picture the documents show.
const DASHBOARD_PNG: &[u8] = include_bytes!("../../../../docs/img/analytics-dashboard.png");

/// A document rendered to HTML, with the title of its first heading.
struct Rendered {
    title: String,
    html: String,
}

static RENDERED: LazyLock<HashMap<&'static str, Rendered>> = LazyLock::new(|| {
    SOURCES
        .iter()
        .map(|source| (source.name, render(source)))
        .collect()
});

#[derive(Template)]
#[template(path = "docs.html")]
struct DocPage<'a> {
    title: &'a str,
    body: &'a str,
    name: &'a str,
    names: &'a [&'static str],
    version: &'static str,
}

/// The names of the served documents, in the order of the menu.
fn names() -> Vec<&'static str> {
    SOURCES.iter().map(|source| source.name).collect()
}

/// `GET /docs`: the README.
pub(crate) async fn index() -> Response {
    page("index")
}

/// `GET /docs/{name}`: one document (`errors`, `api`, … or `errors.md`),
/// or the dashboard picture under `img/`.
pub(crate) async fn doc(Path(name): Path<String>) -> Response {
    let name = name.strip_suffix(".md").unwrap_or(&name);
    page(name)
}

/// `GET /docs/img/{name}`.
pub(crate) async fn image(Path(name): Path<String>) -> Response {
    if name != "analytics-dashboard.png" {
        return UiError::status(StatusCode::NOT_FOUND, "There is no such picture.").into_response();
    }
    let mut response = DASHBOARD_PNG.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
    cache(response)
}

fn page(name: &str) -> Response {
    let Some(doc) = RENDERED.get(name) else {
        return UiError::status(
            StatusCode::NOT_FOUND,
            "There is no such document: the reference is at /docs.",
        )
        .into_response();
    };
    let names = names();
    let page = DocPage {
        title: &doc.title,
        body: &doc.html,
        name,
        names: &names,
        version: assets::version(),
    };
    match page.render() {
        Ok(html) => cache(axum::response::Html(html).into_response()),
        Err(error) => UiError::internal(&error).into_response(),
    }
}

/// The documents change only with the binary: a browser may keep them for
/// an hour.
fn cache(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

/// Renders one document: anchors on headings, links between documents
/// rewritten.
fn render(source: &Source) -> Rendered {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_TASKLISTS;
    let events: Vec<Event<'_>> = Parser::new_ext(source.markdown, options).collect();
    let mut out: Vec<Event<'_>> = Vec::with_capacity(events.len());
    let mut title = None;
    let mut slugs: HashMap<String, usize> = HashMap::new();
    // Links that lead nowhere lose their tags; their ends must go too.
    let mut dropped_links: Vec<bool> = Vec::new();
    let mut index = 0;
    while let Some(event) = events.get(index) {
        index += 1;
        match event {
            Event::Start(Tag::Heading {
                level,
                id,
                classes,
                attrs,
            }) => {
                let text = heading_text(&events[index..]);
                if title.is_none() && *level == HeadingLevel::H1 {
                    title = Some(text.clone());
                }
                let id = match id {
                    Some(id) => id.clone(),
                    None => CowStr::from(unique(&mut slugs, slug(&text))),
                };
                out.push(Event::Start(Tag::Heading {
                    level: *level,
                    id: Some(id),
                    classes: classes.clone(),
                    attrs: attrs.clone(),
                }));
            }
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }) => match link(source.name, dest_url) {
                Some(dest_url) => {
                    dropped_links.push(false);
                    out.push(Event::Start(Tag::Link {
                        link_type: *link_type,
                        dest_url: CowStr::from(dest_url),
                        title: title.clone(),
                        id: id.clone(),
                    }));
                }
                None => dropped_links.push(true),
            },
            Event::End(TagEnd::Link) => {
                if !dropped_links.pop().unwrap_or(false) {
                    out.push(Event::End(TagEnd::Link));
                }
            }
            Event::Start(Tag::Image {
                link_type,
                dest_url,
                title,
                id,
            }) => {
                let dest_url = match dest_url.strip_prefix("img/") {
                    Some(file) => CowStr::from(format!("/docs/img/{file}")),
                    None => dest_url.clone(),
                };
                out.push(Event::Start(Tag::Image {
                    link_type: *link_type,
                    dest_url,
                    title: title.clone(),
                    id: id.clone(),
                }));
            }
            other => out.push(other.clone()),
        }
    }
    let mut html = String::with_capacity(source.markdown.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, out.into_iter());
    Rendered {
        title: title.unwrap_or_else(|| source.name.to_owned()),
        html,
    }
}

/// The plain text of a heading whose start was just read.
fn heading_text(events: &[Event<'_>]) -> String {
    let mut text = String::new();
    for event in events {
        match event {
            Event::End(TagEnd::Heading(_)) => break,
            Event::Text(part) | Event::Code(part) => text.push_str(part),
            _ => {}
        }
    }
    text
}

/// GitHub's anchor for a heading: lower case, letters, digits, `-` and `_`
/// kept, spaces as `-`, everything else dropped.
pub(crate) fn slug(text: &str) -> String {
    text.trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// A second heading with the same anchor gets `-1`, the third `-2`.
fn unique(seen: &mut HashMap<String, usize>, slug: String) -> String {
    let count = seen.entry(slug.clone()).or_insert(0);
    let id = if *count == 0 {
        slug
    } else {
        format!("{slug}-{count}")
    };
    *count += 1;
    id
}

/// Where a link in document `from` leads when served: other documents
/// become `/docs/{name}`, absolute links and anchors stay, links to files
/// that are not served lead nowhere (`None`).
fn link(from: &str, dest: &str) -> Option<String> {
    if dest.starts_with('#') || dest.contains("://") || dest.starts_with("mailto:") {
        return Some(dest.to_owned());
    }
    let (path, fragment) = match dest.split_once('#') {
        Some((path, fragment)) => (path, Some(fragment)),
        None => (dest, None),
    };
    // Resolve against the document's folder: the README is at the root,
    // the rest in docs/.
    let path = path.trim_start_matches("./");
    let path = if from == "index" {
        path.to_owned()
    } else if let Some(up) = path.strip_prefix("../") {
        up.to_owned()
    } else {
        format!("docs/{path}")
    };
    let name = if path == "README.md" {
        "index"
    } else {
        let name = path.strip_prefix("docs/")?.strip_suffix(".md")?;
        SOURCES.iter().find(|source| source.name == name)?.name
    };
    let base = if name == "index" {
        "/docs".to_owned()
    } else {
        format!("/docs/{name}")
    };
    Some(match fragment {
        Some(fragment) => format!("{base}#{fragment}"),
        None => base,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_are_githubs() {
        assert_eq!(slug("validation_failed"), "validation_failed");
        assert_eq!(
            slug("Running replicas on PostgreSQL"),
            "running-replicas-on-postgresql"
        );
        assert_eq!(
            slug("Evaluation errors fail closed"),
            "evaluation-errors-fail-closed"
        );
        assert_eq!(
            slug("`@grantable` (standing grants)"),
            "grantable-standing-grants"
        );
    }

    #[test]
    fn links_between_documents_are_rewritten() {
        assert_eq!(link("index", "docs/api.md").as_deref(), Some("/docs/api"));
        assert_eq!(
            link("operations", "audit.md#crypto-shredding").as_deref(),
            Some("/docs/audit#crypto-shredding")
        );
        assert_eq!(link("sso", "../README.md").as_deref(), Some("/docs"));
        assert_eq!(link("api", "#errors").as_deref(), Some("#errors"));
        assert_eq!(
            link("api", "https://example.com/x.md").as_deref(),
            Some("https://example.com/x.md")
        );
        assert_eq!(link("integrations", "../sdk/python/README.md"), None);
        assert_eq!(link("index", "crates/loopgate/tests/crash.rs"), None);
    }

    #[test]
    fn every_error_code_has_its_anchor() {
        let errors = &RENDERED["errors"];
        for code in loopgate_proto::ErrorCode::ALL {
            let anchor = format!("id=\"{}\"", code.as_str());
            assert!(
                errors.html.contains(&anchor),
                "no anchor for {}",
                code.as_str()
            );
        }
        assert_eq!(errors.title, "Errors");
    }

    #[test]
    fn every_document_renders_with_a_title_and_no_dead_internal_link() {
        for source in SOURCES {
            let doc = &RENDERED[source.name];
            assert!(!doc.title.is_empty());
            for (at, _) in doc.html.match_indices("href=\"/docs/") {
                let rest = &doc.html[at + "href=\"/docs/".len()..];
                let target = rest.split(['"', '#']).next().unwrap_or_default();
                assert!(
                    RENDERED.contains_key(target),
                    "{} links to /docs/{target}",
                    source.name
                );
            }
        }
    }
}
