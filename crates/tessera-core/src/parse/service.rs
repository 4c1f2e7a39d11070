//! Parsing a `service` node's target: `url` (the endpoint itself) or `service` (an announced
//! service's `name/endpoint`), exactly one of them.

use super::Fields;
use crate::model::{ServiceName, ServiceSpec, ServiceTarget};

pub(super) const FIELDS: &[&str] = &["url", "service"];

pub(super) fn parse_service(f: &mut Fields) -> Option<ServiceSpec> {
    match (f.obj.contains_key("url"), f.obj.contains_key("service")) {
        (true, true) => {
            f.err(
                "service",
                "give either `url` (the endpoint's URL) or `service` (an announced service's \
                 `name/endpoint`), not both",
            );
            None
        }
        (false, false) => {
            f.err(
                "url",
                "missing field `url` or `service`: a `service` node needs the endpoint's URL or \
                 an announced service's `name/endpoint` (e.g. `service: faces/detect`)",
            );
            None
        }
        (true, false) => super::parse_url(f).map(|url| ServiceSpec {
            target: ServiceTarget::Url(url),
        }),
        (false, true) => {
            let text = f.string("service")?;
            match ServiceName::parse(&text) {
                Ok(name) => Some(ServiceSpec {
                    target: ServiceTarget::Named(name),
                }),
                Err(message) => {
                    f.err("service", message);
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{NodeKind, ServiceTarget};

    fn problems(node: &str) -> Vec<String> {
        let text = format!(
            "nodes:\n  - {{id: in, type: entry, next: [call]}}\n  - {node}\n  - {{id: end, type: end}}\n"
        );
        match crate::load_document(&text, &crate::Scripts::default()) {
            Ok(_) => Vec::new(),
            Err(r) => r.errors.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn url_xor_service_with_errors_naming_node_and_field() {
        let both =
            problems("{id: call, type: service, url: \"http://x/y\", service: a/b, next: [end]}");
        assert_eq!(both.len(), 1, "{both:?}");
        assert!(
            both[0].contains("node `call`, field `service`: give either `url`"),
            "{both:?}"
        );
        let neither = problems("{id: call, type: service, next: [end]}");
        assert!(
            neither[0].contains("node `call`, field `url`: missing field `url` or `service`"),
            "{neither:?}"
        );
        let bad = problems("{id: call, type: service, service: faces, next: [end]}");
        assert!(
            bad[0].contains("node `call`, field `service`: `faces`: expected"),
            "{bad:?}"
        );
        let text = "nodes:\n  - {id: in, type: entry, next: [call]}\n  - {id: call, type: service, service: faces/detect, next: [end]}\n  - {id: end, type: end}\n";
        let (p, _) = crate::load_document(text, &crate::Scripts::default()).unwrap();
        let NodeKind::Service(spec) = &p.nodes[1].kind else {
            panic!("a service node")
        };
        let ServiceTarget::Named(name) = &spec.target else {
            panic!("a named target")
        };
        assert_eq!(name.to_string(), "faces/detect");
    }
}
