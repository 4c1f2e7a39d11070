//! Drawing a laid-out pipeline as SVG text: the CLI's standalone picture, and the web UI's
//! variant (left to right, node groups keyed for CSS and JavaScript, state labels, links).

use std::fmt::Write as _;

use super::layout::{Layout, Look, MARGIN, Rect, layout_as, loop_caption, text_w};
use super::{SvgOptions, colours};
use crate::model::{Node, NodeKind, Pipeline};

const TITLE_H: f64 = 28.0;
/// Room under a node's shape for its state label (web UI).
const BAND: f64 = 16.0;
const LABEL_SIZE: f64 = 10.0;
pub(super) const ID_STYLE: &str = "font-size=\"13\" font-weight=\"bold\" fill=\"#111827\"";

/// XML text and attribute escaping, in one pass. Characters XML 1.0 forbids even escaped (most
/// C0 controls) are dropped, so a hostile name cannot make the document unreadable.
pub(super) fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\u{0}'..='\u{8}'
            | '\u{b}'
            | '\u{c}'
            | '\u{e}'..='\u{1f}'
            | '\u{fffe}'
            | '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

/// The whole drawing; `web` asks for the web UI's variant (see [`super::to_svg_with`]).
pub(super) fn render(pipeline: &Pipeline, web: Option<&SvgOptions<'_>>) -> String {
    let label_w = |key: &str| {
        let note = web.and_then(|o| (o.annotate)(key));
        note.map_or(0.0, |a| text_w(&a.text, LABEL_SIZE, false) + 8.0)
    };
    let look = match web {
        None => Look::CLI,
        Some(o) => Look {
            lr: o.left_to_right,
            band: BAND,
            label_w: Some(&label_w),
        },
    };
    let lay = layout_as(&pipeline.nodes, &look, "");
    let title = xml(&format!("pipeline {}", pipeline.name));
    let w = lay
        .width
        .max(text_w(&pipeline.name, 14.0, true) + 100.0)
        .ceil();
    let h = (lay.height + TITLE_H).ceil();
    let (class, background, heading) = match web {
        None => ("", "", ""),
        Some(_) => (
            " class=\"pipeline-graph\"",
            " class=\"background\"",
            " class=\"graph-title\"",
        ),
    };
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\"{class} width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" font-family=\"Helvetica, Arial, sans-serif\">\n\
         <title>{title}</title>\n<defs>\n"
    );
    for (id, colour) in [("arrow", "#555555"), ("arrow-back", "#d97706")] {
        let _ = writeln!(
            s,
            "<marker id=\"{id}\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"8\" \
             markerHeight=\"8\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"{colour}\"/></marker>"
        );
    }
    let _ = writeln!(
        s,
        "</defs>\n<rect{background} width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/>\n\
         <text{heading} x=\"{MARGIN}\" y=\"22\" font-size=\"14\" font-weight=\"bold\">{title}</text>\n\
         <g transform=\"translate(0,{TITLE_H})\">"
    );
    let pen = Pen { look, web };
    pen.draw(&lay, &pipeline.nodes, "", &mut s);
    s.push_str("</g>\n</svg>\n");
    s
}

/// A point on segment `a`→`b`, `r` from `a` (at most half way).
fn toward(a: (f64, f64), b: (f64, f64), r: f64) -> (f64, f64) {
    let t = (r / (b.0 - a.0).hypot(b.1 - a.1).max(1e-9)).min(0.5);
    (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t)
}

fn pt((x, y): (f64, f64)) -> String {
    format!("{x:.1},{y:.1}")
}

/// What is drawn, and how: the CLI's picture when `web` is `None`.
struct Pen<'a> {
    look: Look<'a>,
    web: Option<&'a SvgOptions<'a>>,
}

impl Pen<'_> {
    /// Draws a layout's edges, then its nodes (a loop's template nested in its box). `prefix`
    /// turns ids into node keys (`loop/` inside a loop's template).
    fn draw(&self, lay: &Layout, nodes: &[Node], prefix: &str, s: &mut String) {
        for r in &lay.routes {
            let p = &r.points;
            let mut d = format!("M{}", pt(p[0]));
            if r.back {
                for i in 1..p.len() - 1 {
                    let (a, b) = (toward(p[i], p[i - 1], 8.0), toward(p[i], p[i + 1], 8.0));
                    let _ = write!(d, " L{} Q{} {}", pt(a), pt(p[i]), pt(b));
                }
                let _ = write!(d, " L{}", pt(p[p.len() - 1]));
            } else {
                for pair in p.windows(2) {
                    let ((ax, ay), (bx, by)) = (pair[0], pair[1]);
                    // Tangents along the layers: vertical down, horizontal to the right.
                    match self.look.lr {
                        false => {
                            let my = (ay + by) / 2.0;
                            let _ = write!(d, " C{ax:.1},{my:.1} {bx:.1},{my:.1} {bx:.1},{by:.1}");
                        }
                        true => {
                            let mx = (ax + bx) / 2.0;
                            let _ = write!(d, " C{mx:.1},{ay:.1} {mx:.1},{by:.1} {bx:.1},{by:.1}");
                        }
                    }
                }
            }
            let (colour, dash, marker) = match r.back {
                true => ("#d97706", " stroke-dasharray=\"6 4\"", "arrow-back"),
                false => ("#555555", "", "arrow"),
            };
            let hooks = match self.web {
                None => String::new(),
                Some(_) => format!(
                    " class=\"edge{}\" data-from=\"{}\" data-to=\"{}\"",
                    if r.back { " back" } else { "" },
                    xml(&format!("{prefix}{}", nodes[r.from].id)),
                    xml(&format!("{prefix}{}", nodes[r.to].id)),
                ),
            };
            let _ = writeln!(
                s,
                "<path{hooks} d=\"{d}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.4\"{dash} \
                 marker-end=\"url(#{marker})\"/>"
            );
            if let Some(label) = &r.label {
                self.edge_label(p, r.back, colour, label, s);
            }
        }
        for (i, node) in nodes.iter().enumerate() {
            self.node(lay, i, node, prefix, s);
        }
    }

    /// A then/else (or collect) label: top to bottom, beside the back edge's vertical run or
    /// 30% along the first curve, on its outer side; left to right, on the middle of the back
    /// edge's lane or of the first curve, over a white halo that keeps it readable on the line.
    fn edge_label(&self, p: &[(f64, f64)], back: bool, colour: &str, label: &str, s: &mut String) {
        let (dx, dy) = (p[1].0 - p[0].0, p[1].1 - p[0].1);
        let (x, y, anchor) = match (self.look.lr, back) {
            (false, true) => (p[1].0 + 4.0, (p[1].1 + p[2].1) / 2.0, "start"),
            (false, false) if dx < -1.0 => (p[0].0 + 0.216 * dx - 5.0, p[0].1 + 0.657 * dy, "end"),
            (false, false) => (p[0].0 + 0.216 * dx + 5.0, p[0].1 + 0.657 * dy, "start"),
            (true, true) => ((p[2].0 + p[3].0) / 2.0, p[2].1, "middle"),
            (true, false) => (p[0].0 + dx / 2.0, p[0].1 + dy / 2.0, "middle"),
        };
        let extra = match self.web {
            None => "",
            Some(_) if self.look.lr => {
                " class=\"edge-label\" stroke=\"#ffffff\" stroke-width=\"3\" paint-order=\"stroke\""
            }
            Some(_) => " class=\"edge-label\"",
        };
        let _ = writeln!(
            s,
            "<text{extra} x=\"{x:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"{colour}\" \
             text-anchor=\"{anchor}\">{}</text>",
            y + 3.0,
            xml(label)
        );
    }

    /// One node's group; a loop's template follows its box (inside it, for the CLI).
    fn node(&self, lay: &Layout, i: usize, node: &Node, prefix: &str, s: &mut String) {
        let b = lay.boxes[i];
        let Rect { x, y, w, h } = b;
        let (cx, cy) = (b.cx(), b.cy());
        let (fill, line) = colours(&node.kind);
        let (id, ty) = (xml(&node.id), node.type_name());
        let key = format!("{prefix}{}", node.id);
        let (class, tail) = match self.web {
            None => {
                let _ = writeln!(s, "<g><title>{id} ({ty})</title>");
                ("", None)
            }
            Some(o) => {
                let note = (o.annotate)(&key);
                let state = note.as_ref().map_or(String::new(), |a| {
                    format!(" data-state=\"{}\"", xml(a.state))
                });
                let _ = writeln!(
                    s,
                    "<g class=\"node\" data-node=\"{}\" data-type=\"{ty}\"{state}><title>{id} ({ty})</title>",
                    xml(&key)
                );
                let link = (o.link)(&key);
                if let Some(href) = &link {
                    let _ = writeln!(s, "<a href=\"{}\">", xml(href));
                }
                (" class=\"shape\"", Some((note, link.is_some())))
            }
        };
        let rect = |rx: f64| {
            format!(
                "<rect{class} x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" rx=\"{rx:.1}\""
            )
        };
        let (id_class, type_class) = match self.web {
            None => ("", ""),
            Some(_) => (" class=\"node-id\"", " class=\"node-type\""),
        };
        // The web UI's node ends with its state label, closing its link if any (`tail`).
        let close = |s: &mut String| {
            let Some((note, linked)) = &tail else {
                return;
            };
            let text = note.as_ref().map_or(String::new(), |a| xml(&a.text));
            let _ = writeln!(
                s,
                "<text class=\"state-label\" x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" \
                 font-size=\"{LABEL_SIZE}\" fill=\"#374151\">{text}</text>",
                y + h + 12.0
            );
            if *linked {
                s.push_str("</a>\n");
            }
            s.push_str("</g>\n");
        };
        if let (NodeKind::Loop(spec), Some((ox, oy, sub))) = (&node.kind, &lay.inner[i]) {
            let (box_, caption) = (rect(12.0), xml(&loop_caption(spec)));
            let (tx, inner_at) = (x + 12.0, pt((x + ox, y + oy)));
            let caption_class = match self.web {
                None => "",
                Some(_) => " class=\"loop-caption\"",
            };
            let _ = writeln!(
                s,
                "{box_} fill=\"{fill}\" stroke=\"{line}\" stroke-width=\"1.6\" stroke-dasharray=\"8 4\"/>\n\
                 <text{id_class} x=\"{tx:.1}\" y=\"{:.1}\" {ID_STYLE}>{id}</text>\n\
                 <text{caption_class} x=\"{tx:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"{line}\">{caption}</text>",
                y + 18.0,
                y + 33.0,
            );
            let inner = format!("{key}/");
            if self.web.is_none() {
                let _ = writeln!(s, "<g transform=\"translate({inner_at})\">");
                self.draw(sub, &spec.nodes, &inner, s);
                s.push_str("</g>\n</g>\n");
                return;
            }
            // Beside the loop's group, not in it: a rule for the loop's state (or its link)
            // must not reach its template's nodes.
            close(s);
            let _ = writeln!(
                s,
                "<g class=\"loop-body\" data-loop=\"{}\" transform=\"translate({inner_at})\">",
                xml(&key)
            );
            self.draw(sub, &spec.nodes, &inner, s);
            s.push_str("</g>\n");
            return;
        }
        let (shape, stroke) = match node.kind {
            NodeKind::Branch(_) => {
                let corners = [(cx, y), (x + w, cy), (cx, y + h), (x, cy)]
                    .map(pt)
                    .join(" ");
                (format!("<polygon{class} points=\"{corners}\""), 1.4)
            }
            NodeKind::Entry(_) => (rect(h / 2.0), 1.4),
            NodeKind::End(_) => (rect(h / 2.0), 2.4),
            _ => (rect(4.0), 1.4),
        };
        let _ = write!(
            s,
            "{shape} fill=\"{fill}\" stroke=\"{line}\" stroke-width=\"{stroke}\"/>\n\
             <text{id_class} x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" {ID_STYLE}>{id}</text>\n\
             <text{type_class} x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\" \
             fill=\"{line}\">{ty}</text>\n",
            cy - 2.0,
            cy + 12.0,
        );
        match self.web {
            None => s.push_str("</g>\n"),
            Some(_) => close(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Annotation, to_svg, to_svg_with};
    use super::*;
    use crate::graph::tests::{
        DEMO, chain_yaml, check_xml, fan_out_yaml, loops_yaml, parse, random_pipelines, tangle_yaml,
    };

    const DEMO_KEYS: [&str; 9] = [
        "in",
        "fetch-a",
        "fetch-b",
        "merge",
        "check",
        "each",
        "each/get-one",
        "each/clean",
        "end",
    ];

    /// Nodes, loops' templates included.
    fn all_nodes(nodes: &[Node]) -> usize {
        let inner = nodes.iter().map(|n| match &n.kind {
            NodeKind::Loop(spec) => all_nodes(&spec.nodes),
            _ => 0,
        });
        nodes.len() + inner.sum::<usize>()
    }

    fn none(_: &str) -> Option<Annotation> {
        None
    }

    fn no_link(_: &str) -> Option<String> {
        None
    }

    fn plain(left_to_right: bool) -> SvgOptions<'static> {
        SvgOptions {
            left_to_right,
            annotate: &none,
            link: &no_link,
        }
    }

    /// The opening tag of the node group of `key`.
    fn group<'s>(svg: &'s str, key: &str) -> &'s str {
        let at = svg
            .find(&format!("<g class=\"node\" data-node=\"{key}\""))
            .unwrap_or_else(|| panic!("no group for {key}"));
        &svg[at..at + svg[at..].find('>').unwrap() + 1]
    }

    #[test]
    fn every_node_is_a_keyed_group_with_a_state_label() {
        let p = parse(DEMO);
        for lr in [false, true] {
            let svg = to_svg_with(&p, &plain(lr));
            check_xml(&svg).unwrap();
            assert!(svg.starts_with(
                "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"pipeline-graph\" width=\""
            ));
            assert!(svg.contains(" viewBox=\"0 0 "));
            assert_eq!(svg.matches("<g class=\"node\"").count(), 9);
            assert_eq!(svg.matches("<text class=\"state-label\"").count(), 9);
            assert_eq!(svg.matches("></text>").count(), 9, "empty state labels");
            for key in DEMO_KEYS {
                assert!(!group(&svg, key).contains("data-state"), "{key}");
            }
            assert!(group(&svg, "each").contains("data-type=\"loop\""));
            assert!(svg.contains("<g class=\"loop-body\" data-loop=\"each\" transform="));
            assert!(!svg.contains("<a ") && !svg.contains("style="));
            // Shapes carry a class and colours CSS can override.
            assert_eq!(svg.matches("<rect class=\"shape\"").count(), 8);
            assert_eq!(svg.matches("<polygon class=\"shape\"").count(), 1);
            assert!(
                svg.contains(
                    "<path class=\"edge back\" data-from=\"check\" data-to=\"fetch-a\" d="
                )
            );
            assert!(svg.contains("<path class=\"edge\" data-from=\"each/get-one\""));
            assert_eq!(svg.matches("class=\"edge-label\"").count(), 2, "then, else");
        }
        // The CLI's drawing has none of the web UI's hooks.
        let cli = to_svg(&p);
        assert!(!cli.contains("class=") && !cli.contains("data-"));
    }

    #[test]
    fn annotations_are_drawn_escaped() {
        let p = parse(DEMO);
        let annotate = |key: &str| match key {
            "fetch-a" => Some(Annotation {
                state: "failed",
                text: "failed · 2 attempts <timeout> & \"more\"".into(),
            }),
            "each/clean" => Some(Annotation {
                state: "running",
                text: "412 of 1,000 items".into(),
            }),
            "each" => Some(Annotation {
                state: "running",
                text: String::new(),
            }),
            _ => None,
        };
        let options = SvgOptions {
            annotate: &annotate,
            ..plain(true)
        };
        let svg = to_svg_with(&p, &options);
        check_xml(&svg).unwrap();
        assert!(group(&svg, "fetch-a").ends_with(" data-state=\"failed\">"));
        assert!(group(&svg, "each/clean").contains(" data-state=\"running\""));
        assert!(group(&svg, "each").contains(" data-state=\"running\""));
        assert!(!group(&svg, "fetch-b").contains("data-state"));
        assert!(
            svg.contains(
                ">failed · 2 attempts &lt;timeout&gt; &amp; &quot;more&quot;</text>\n</g>"
            )
        );
        assert!(svg.contains(">412 of 1,000 items</text>"));
        // A loop's state stays on its group: its template's nodes are outside it.
        let each = svg.find(group(&svg, "each")).unwrap();
        let body = svg.find("<g class=\"loop-body\"").unwrap();
        assert!(svg[each..body].ends_with("</text>\n</g>\n"));
    }

    #[test]
    fn links_wrap_node_content_in_anchors() {
        let p = parse(DEMO);
        let link = |key: &str| (key != "end").then(|| format!("#node-{key}?a=1&b=2"));
        let options = SvgOptions {
            link: &link,
            ..plain(false)
        };
        let svg = to_svg_with(&p, &options);
        check_xml(&svg).unwrap();
        assert_eq!(svg.matches("<a href=\"").count(), 8);
        assert!(svg.contains("<a href=\"#node-each/clean?a=1&amp;b=2\">\n<rect class=\"shape\""));
        // Inside the group, after the title; a loop's link does not wrap its template's links.
        let fetch = group(&svg, "fetch-a");
        assert!(svg.contains(&format!(
            "{fetch}<title>fetch-a (http)</title>\n<a href=\"#node-fetch-a?a=1&amp;b=2\">"
        )));
        let each = &svg[svg.find(group(&svg, "each")).unwrap()..];
        let body = each.find("<g class=\"loop-body\"").unwrap();
        assert_eq!(each[..body].matches("<a ").count(), 1);
        assert!(each[..body].ends_with("</text>\n</a>\n</g>\n"));
        assert!(!group(&svg, "end").contains("<a") && !svg.contains("#node-end"));
    }

    #[test]
    fn hostile_ids_labels_and_names_are_escaped() {
        let mut p = parse(DEMO);
        p.name = "<script>alert('x')</script> & \u{1}".into();
        let hostile = |id: &str| format!("{id}\"><script>&'");
        for node in p.nodes.iter_mut() {
            node.id = hostile(&node.id);
            node.next = node.next.iter().map(|id| hostile(id)).collect();
            if let NodeKind::Branch(b) = &mut node.kind {
                b.then.next = b.then.next.iter().map(|id| hostile(id)).collect();
                b.otherwise.next = b.otherwise.next.iter().map(|id| hostile(id)).collect();
            }
        }
        let annotate = |key: &str| {
            Some(Annotation {
                state: "odd\"state<",
                text: format!("{key} </text><script>"),
            })
        };
        let link = |key: &str| Some(format!("javascript:\"{key}\"<"));
        for lr in [false, true] {
            let options = SvgOptions {
                left_to_right: lr,
                annotate: &annotate,
                link: &link,
            };
            let svg = to_svg_with(&p, &options);
            check_xml(&svg).unwrap();
            assert!(!svg.contains("<script") && !svg.contains('\u{1}'));
            let fetch = "fetch-a&quot;&gt;&lt;script&gt;&amp;&apos;";
            assert!(svg.contains(&format!("data-node=\"{fetch}\"")));
            assert!(svg.contains("data-state=\"odd&quot;state&lt;\""));
            assert!(svg.contains(&format!("<a href=\"javascript:&quot;{fetch}&quot;&lt;\">")));
            assert!(svg.contains(&format!(">{fetch} &lt;/text&gt;&lt;script&gt;</text>")));
            assert_eq!(svg.matches("<g class=\"node\"").count(), 9);
            // The edges still join the renamed nodes.
            assert!(svg.contains(&format!(
                "class=\"edge back\" data-from=\"check{}",
                &fetch[7..]
            )));
        }
        check_xml(&to_svg(&p)).unwrap();
    }

    #[test]
    fn sibling_loops_key_their_templates_apart() {
        let p = parse(
            "nodes:
  - {id: in, type: entry, api: {route: r, body: {xs: [1]}}, next: [a]}
  - {id: a, type: loop, items: in.out.xs, next: [b], nodes: [{id: clean, type: node}]}
  - {id: b, type: loop, items: in.out.xs, next: [end], nodes: [{id: clean, type: node}]}
  - {id: end, type: end}",
        );
        let svg = to_svg_with(&p, &plain(true));
        group(&svg, "a/clean");
        group(&svg, "b/clean");
        assert!(!svg.contains("data-node=\"clean\""));
    }

    #[test]
    fn random_pipelines_render_well_formed() {
        for p in random_pipelines(60) {
            check_xml(&to_svg(&p)).unwrap();
            for lr in [false, true] {
                let svg = to_svg_with(&p, &plain(lr));
                check_xml(&svg).unwrap();
                assert_eq!(
                    svg.matches("<g class=\"node\"").count(),
                    all_nodes(&p.nodes)
                );
            }
        }
    }

    /// Fan-out, chain, loops and a tangle of long crossing edges, about 2,000 nodes each.
    fn big_pipelines() -> Vec<(&'static str, Pipeline)> {
        vec![
            ("fan-out of 2,000", parse(&fan_out_yaml(2000))),
            ("chain of 2,000", parse(&chain_yaml(2000))),
            ("50 loops of 40", parse(&loops_yaml(50, 40))),
            ("tangle of 2,002", parse(&tangle_yaml())),
        ]
    }

    #[test]
    fn two_thousand_nodes_render() {
        let note = |_: &str| {
            Some(Annotation {
                state: "pending",
                text: "pending".into(),
            })
        };
        let link = |key: &str| Some(format!("#node-{key}"));
        let options = SvgOptions {
            left_to_right: true,
            annotate: &note,
            link: &link,
        };
        for (name, p) in big_pipelines() {
            let nodes = all_nodes(&p.nodes);
            assert!(nodes >= 2000, "{name}");
            let svg = to_svg_with(&p, &options);
            assert_eq!(svg.matches("<g class=\"node\"").count(), nodes, "{name}");
            assert_eq!(svg.matches("<a href=").count(), nodes, "{name}");
            if name.starts_with("fan-out") || name.starts_with("chain") {
                assert_eq!(nodes, 2000);
            }
        }
    }

    /// `cargo test --release -p tessera-core graph -- --ignored --nocapture`
    #[test]
    #[ignore = "timing: run in release mode"]
    fn timing_of_big_pipelines() {
        let note = |key: &str| {
            Some(Annotation {
                state: "running",
                text: format!("{} of 1,000 items", key.len()),
            })
        };
        let link = |key: &str| Some(format!("#node-{key}"));
        for (name, p) in big_pipelines() {
            let best = |f: &dyn Fn() -> usize| {
                (0..5)
                    .map(|_| {
                        let t = std::time::Instant::now();
                        std::hint::black_box(f());
                        t.elapsed()
                    })
                    .min()
                    .unwrap()
            };
            let lay = best(&|| super::super::layout::layout(&p.nodes).routes.len());
            let cli = best(&|| to_svg(&p).len());
            let web = |lr| {
                best(&|| {
                    let options = SvgOptions {
                        left_to_right: lr,
                        annotate: &note,
                        link: &link,
                    };
                    to_svg_with(&p, &options).len()
                })
            };
            println!(
                "{name:>17}: layout {lay:>9.2?}, to_svg {cli:>9.2?}, to_svg_with top-down {:>9.2?}, \
                 left-right {:>9.2?}",
                web(false),
                web(true)
            );
        }
    }
}
