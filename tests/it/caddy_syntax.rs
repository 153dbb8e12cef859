//! Values Caddy would read as syntax, against the real `caddy adapt`: what
//! the renderer lets through keeps the Caddyfile's structure, and what it
//! refuses is what would have changed it (a site turned into a snippet, an
//! import, a matcher in place of an argument).

use std::path::Path;

use edge_core::StackBundle;
use edge_render::{RenderError, Renderer, Source, Variables};
use edge_tests::caddy;
use proptest::prelude::*;

fn render(template: &str, pairs: &[(&str, &str)]) -> Result<String, RenderError> {
    let bundle = StackBundle::partner_edge();
    let vars = Variables::new(&bundle.stack.variables).with_layer(
        Source::Flag,
        [("PARTNER_ID", "acme"), ("PARTNER_DOMAIN", "edge.example.com")]
            .iter()
            .chain(pairs)
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Renderer::new(&bundle).render_template("caddy", Some((Path::new("probe.tpl"), template)), &vars)
}

/// The hosts of every route of every server `caddy adapt` made.
fn hosts(config: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for server in config["apps"]["http"]["servers"].as_object().into_iter().flat_map(|s| s.values()) {
        for route in server["routes"].as_array().into_iter().flatten() {
            for m in route["match"].as_array().into_iter().flatten() {
                out.extend(m["host"].as_array().into_iter().flatten().filter_map(|h| h.as_str().map(str::to_owned)));
            }
        }
    }
    out
}

#[test]
fn what_the_renderer_refuses_is_what_caddy_would_misread() {
    // Written as the old renderer did, Caddy takes `(x)` for a snippet: adapt succeeds and the site is gone.
    let misread = caddy::adapt("\"(x)\" {\n\trespond ok\n}\n").unwrap();
    assert!(misread["apps"]["http"].is_null(), "{misread}");
    // And `import` makes the file unreadable.
    assert!(caddy::adapt("import {\n\trespond ok\n}\n").is_err());
    // A path as reverse_proxy's first argument is a matcher, not an upstream.
    let matcher = caddy::adapt(":8080 {\n\treverse_proxy \"/x\"\n}\n").unwrap();
    assert_eq!(matcher["apps"]["http"]["servers"]["srv0"]["routes"][0]["match"][0]["path"][0], "/x", "{matcher}");

    let site = "# probe\n{{ V }} {\n\trespond ok\n}\n";
    for v in ["(x)", "import", "@m", "/x", "*", "edge.example.com/admin"] {
        let err = render(site, &[("V", v)]).unwrap_err().to_string();
        assert!(err.starts_with("probe.tpl:2: V "), "{v:?}: {err}");
    }
    let proxy = ":8080 {\n\treverse_proxy {{ V }}\n}\n";
    for v in ["/x", "*", "@m"] {
        let err = render(proxy, &[("V", v)]).unwrap_err().to_string();
        assert!(err.starts_with("probe.tpl:2: V "), "{v:?}: {err}");
    }
}

#[test]
fn accepted_site_addresses_are_sites_caddy_serves() {
    let bundle = StackBundle::partner_edge();
    let template = bundle.template_source("Caddyfile.tera").unwrap();
    for (address, host) in [
        ("edge.example.com", Some("edge.example.com")),
        ("https://edge.example.com:8443", Some("edge.example.com")),
        ("*.example.com", Some("*.example.com")),
        ("localhost", Some("localhost")),
        ("http://127.0.0.1:8080", Some("127.0.0.1")),
        ("[::1]:8443", Some("::1")),
        (":8080", None),
        ("http://", None),
    ] {
        // The partner edge's own Caddyfile, its site from the variable.
        let text = render(template, &[("CADDY_SITE", address)]).unwrap();
        let config = caddy::adapt(&text).unwrap_or_else(|e| panic!("{address:?}: {e}"));
        let servers = config["apps"]["http"]["servers"].as_object().map_or(0, |s| s.len());
        assert_eq!(servers, 1, "{address:?}: {config}");
        assert_eq!(hosts(&config), host.into_iter().map(str::to_owned).collect::<Vec<_>>(), "{address:?}: {config}");
    }
}

/// Every kind of position at once: a line start (a `vars` name), a
/// directive's first argument (`respond`'s body), a plain argument.
const POSITIONS: &str = ":8080 {\n\tvars {\n\t\t{{ V }} x\n\t}\n\theader X-A {{ V }}\n\trespond {{ V }} 200\n}\n";

/// The rendered file keeps its structure: one route holding the vars,
/// header and respond handlers, each with the value (once Caddy's replacer
/// turns `\{` back into a brace).
fn check_positions(v: &str) -> Result<(), TestCaseError> {
    let text = match render(POSITIONS, &[("V", v)]) {
        Ok(text) => text,
        Err(e) => {
            // Refused: syntax where it stands, or a value no token can hold.
            let e = e.to_string();
            let syntax =
                v == "import" || v == "*" || v.starts_with(['@', '/']) || (v.starts_with('(') && v.ends_with(')'));
            let unquotable = v.contains("{$") || (v.contains('`') && (v.ends_with('\\') || v.contains("\\\"")));
            prop_assert!(syntax || unquotable, "{:?} refused: {}", v, e);
            return Ok(());
        }
    };
    let config = caddy::adapt(&text).map_err(|e| TestCaseError::fail(format!("{v:?}: {e}")))?;
    let routes = &config["apps"]["http"]["servers"]["srv0"]["routes"];
    prop_assert_eq!(routes.as_array().map(Vec::len), Some(1), "{:?}: {}", v, config);
    prop_assert!(routes[0]["match"].is_null(), "{:?}: a matcher appeared: {}", v, config);
    let handlers = routes[0]["handle"].as_array().unwrap();
    let kinds: Vec<&str> = handlers.iter().filter_map(|h| h["handler"].as_str()).collect();
    prop_assert_eq!(&kinds, &["vars", "headers", "static_response"], "{:?}: {}", v, config);
    let runtime = |s: &str| s.replace("\\{", "{").replace("\\}", "}");
    let names: Vec<String> =
        handlers[0].as_object().unwrap().keys().filter(|k| *k != "handler").map(|k| runtime(k)).collect();
    prop_assert_eq!(names, vec![v.to_owned()], "{}", config);
    prop_assert_eq!(handlers[1]["response"]["set"]["X-A"][0].as_str().map(runtime), Some(v.to_owned()));
    prop_assert_eq!(handlers[2]["body"].as_str().map(runtime), Some(v.to_owned()));
    Ok(())
}

#[test]
fn hostile_values_keep_the_structure_caddy_reads() {
    for v in [
        "plain",
        "import",
        "import x",
        "(x)",
        "(x",
        "@m",
        "/x",
        "*",
        "*x",
        "{",
        "}",
        "{env.HOME}",
        "two words",
        "# hash",
        "q\"uote",
        "`tick`",
        "line\nbreak",
        "}\n}\nevil {",
        "\u{e9}\u{65e5}",
    ] {
        check_positions(v).unwrap_or_else(|e| panic!("{e}"));
    }
}

proptest! {
    // Each case runs caddy: a few dozen keep the suite quick.
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn random_values_keep_the_structure_caddy_reads(v in "[a-z@/(*]?[^\\x00-\\x1f\"`\\\\]{0,10}") {
        // `handler` would collide with the vars handler's own key in the adapted JSON.
        prop_assume!(v != "handler" && !v.is_empty());
        check_positions(&v)?;
    }
}
