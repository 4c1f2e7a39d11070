//! Service names (`service: faces/detect`) resolved against the services a registry knows:
//! the same lookup when a node is dispatched (engine) and when a pipeline is checked against a
//! server's registry (`tessera validate --server`). Pure: the registry's content is given.

use serde_json::Value;

use crate::model::{Node, NodeKind, Pipeline, ServiceName, ServiceTarget};
use crate::report::{Issue, Report};

/// A service as announced: its name, base URL and the paths of its endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    pub name: String,
    pub url: String,
    /// Endpoint paths, each starting with `/`.
    pub paths: Vec<String>,
}

impl Announced {
    /// From an announcement's parts; `endpoints` is its list of `{"path", …}` objects.
    pub fn new(name: &str, url: &str, endpoints: &Value) -> Announced {
        let paths = endpoints
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["path"].as_str())
            .map(str::to_string)
            .collect();
        Announced {
            name: name.to_string(),
            url: url.trim_end_matches('/').to_string(),
            paths,
        }
    }
}

/// Why a name does not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error(
        "no service named `{service}` is announced (`service: {name}`); known services: {}",
        list(known)
    )]
    UnknownService {
        service: String,
        name: String,
        known: Vec<String>,
    },
    #[error(
        "service `{service}` announces no endpoint `{path}` (`service: {name}`); its endpoints: {}",
        list(paths)
    )]
    UnknownEndpoint {
        service: String,
        name: String,
        path: String,
        paths: Vec<String>,
    },
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

/// The URL a name stands for: the service's base URL followed by the endpoint's path.
pub fn resolve(name: &ServiceName, known: &[Announced]) -> Result<String, NameError> {
    let Some(service) = known.iter().find(|s| s.name == name.service) else {
        let mut names: Vec<String> = known.iter().map(|s| s.name.clone()).collect();
        names.sort();
        return Err(NameError::UnknownService {
            service: name.service.clone(),
            name: name.to_string(),
            known: names,
        });
    };
    let path = name.path();
    if !service.paths.contains(&path) {
        return Err(NameError::UnknownEndpoint {
            service: service.name.clone(),
            name: name.to_string(),
            path,
            paths: service.paths.clone(),
        });
    }
    Ok(format!("{}{path}", service.url))
}

/// Every `service` node (loop templates included) whose name does not resolve, as issues on
/// its `service` field.
pub fn check_names(pipeline: &Pipeline, known: &[Announced]) -> Report {
    fn visit(nodes: &[Node], known: &[Announced], report: &mut Report) {
        for node in nodes {
            match &node.kind {
                NodeKind::Service(spec) => {
                    if let ServiceTarget::Named(name) = &spec.target
                        && let Err(e) = resolve(name, known)
                    {
                        report.push(Issue::node(&node.id, "service", e.to_string()));
                    }
                }
                NodeKind::Loop(l) => visit(&l.nodes, known, report),
                _ => {}
            }
        }
    }
    let mut report = Report::default();
    visit(&pipeline.nodes, known, &mut report);
    report
}

/// Whether a pipeline has `service` nodes (loop templates included): running it needs a way
/// to receive callbacks.
pub fn has_service_nodes(nodes: &[Node]) -> bool {
    nodes.iter().any(|n| match &n.kind {
        NodeKind::Service(_) => true,
        NodeKind::Loop(l) => has_service_nodes(&l.nodes),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn known() -> Vec<Announced> {
        vec![
            Announced::new(
                "faces",
                "http://127.0.0.1:8101/",
                &json!([{"route": "faces-detect", "path": "/detect"}]),
            ),
            Announced::new(
                "imaging",
                "http://127.0.0.1:8102",
                &json!([{"path": "/blur"}, {"path": "/crop"}]),
            ),
        ]
    }

    fn name(text: &str) -> ServiceName {
        ServiceName::parse(text).unwrap()
    }

    #[test]
    fn names_resolve_to_the_announced_url_and_path() {
        assert_eq!(
            resolve(&name("faces/detect"), &known()).unwrap(),
            "http://127.0.0.1:8101/detect"
        );
        let e = resolve(&name("facez/detect"), &known()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no service named `facez` is announced (`service: facez/detect`); known services: faces, imaging"
        );
        let e = resolve(&name("imaging/sharpen"), &known()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "service `imaging` announces no endpoint `/sharpen` (`service: imaging/sharpen`); its endpoints: /blur, /crop"
        );
        let e = resolve(&name("faces/detect"), &[]).unwrap_err();
        assert!(e.to_string().ends_with("known services: none"), "{e}");
    }

    #[test]
    fn bad_names_are_refused_with_the_reason() {
        assert!(
            ServiceName::parse("faces")
                .unwrap_err()
                .contains("expected")
        );
        assert!(ServiceName::parse("1faces/detect").is_err());
        assert!(ServiceName::parse("faces/").is_err());
        assert!(ServiceName::parse("faces/a//b").is_err());
        assert!(ServiceName::parse("faces/detect?x=1").is_err());
        assert!(ServiceName::parse("faces/{{x}}").is_err());
        let n = name("imaging/v2/blur");
        assert_eq!(
            (n.service.as_str(), n.path()),
            ("imaging", "/v2/blur".into())
        );
    }

    #[test]
    fn check_names_looks_into_loop_templates() {
        let text = r#"
nodes:
  - {id: in, type: entry, next: [detect]}
  - {id: detect, type: service, service: faces/detect, next: [each]}
  - id: each
    type: loop
    items: detect.out.areas
    next: [end]
    nodes:
      - {id: crop, type: service, service: imaging/cut}
  - {id: end, type: end}
"#;
        let (p, _) = crate::load_document(text, &crate::Scripts::default()).unwrap();
        assert!(has_service_nodes(&p.nodes));
        let report = check_names(&p, &known());
        assert_eq!(report.errors.len(), 1, "{report}");
        assert_eq!(report.errors[0].node.as_deref(), Some("crop"));
        assert_eq!(report.errors[0].field, "service");
    }
}
