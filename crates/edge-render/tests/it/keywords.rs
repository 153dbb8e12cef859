//! Values a Caddyfile or a systemd unit would read as syntax where they
//! stand are refused, naming the variable and the template line: site
//! addresses are `[scheme://]host[:port]`, no `import`, `(snippet)` or
//! `@matcher` at the start of a line, no matcher as a directive's first
//! argument, no prefix (`+`, `-`, `@`...) on an `ExecStart=` command.

use std::collections::BTreeMap;
use std::path::Path;

use edge_core::StackBundle;
use edge_render::{RenderError, Renderer};

use crate::support::vars;

fn render_caddy(template: &str, v: &str) -> Result<String, RenderError> {
    let bundle = StackBundle::partner_edge();
    let vars = vars(&bundle, "caddy.env", &[], &[("V", v)]);
    Renderer::new(&bundle).render_template("caddy", Some((Path::new("ops/Caddyfile.tpl"), template)), &vars)
}

/// `Ok(token)`: the value renders, as this token; `Err(message)`: the whole error.
fn check(template: &str, v: &str, expected: Result<&str, &str>) {
    match (render_caddy(template, v), expected) {
        (Ok(text), Ok(token)) => {
            assert_eq!(text, template.replace("{{ V }}", token), "template {template:?}, V={v:?}");
        }
        (Err(e), Err(want)) => assert_eq!(e.to_string(), want, "template {template:?}, V={v:?}"),
        (got, want) => panic!("template {template:?}, V={v:?}: got {got:?}, want {want:?}"),
    }
}

const SITE: &str = "# ops\n{{ V }} {\n\trespond ok\n}\n";
const NOT_A_SITE: &str = "ops/Caddyfile.tpl:2: V is not a site address: Caddy takes [scheme://]host[:port] here";

#[test]
fn site_addresses_are_scheme_host_port() {
    for (good, token) in [
        ("edge.example.com", "edge.example.com"),
        ("localhost", "localhost"),
        (":8080", "\":8080\""),
        ("127.0.0.1:8443", "127.0.0.1:8443"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("https://edge.example.com:8443", "https://edge.example.com:8443"),
        ("*.example.com", "\"*.example.com\""),
        ("[::1]:8443", "\"[::1]:8443\""),
    ] {
        check(SITE, good, Ok(token));
    }
    for bad in [
        "(x)",
        "(snippet",
        "@m",
        "/x",
        "*",
        "",
        "edge.example.com/path",
        "two words",
        "edge.example.com {",
        "edge.example.com\n}\nother.example.com",
        ":99999",
        "a:b:c",
        "-x.example.com",
    ] {
        check(SITE, bad, Err(NOT_A_SITE));
    }
    check(
        SITE,
        "import",
        Err("ops/Caddyfile.tpl:2: V is `import`, which Caddy reads as its import directive at the start of a line"),
    );
    check(SITE, "unix//run/caddy.sock", Err(NOT_A_SITE));
    check(
        SITE,
        "ftp://edge.example.com",
        Err(
            "ops/Caddyfile.tpl:2: V has a scheme other than http:// or https://, which a Caddy site address cannot have",
        ),
    );
    // The whole token is the address: the template's text around a value counts.
    check("# ops\nhttps://{{ V }}:8443 {\n}\n", "edge.example.com", Ok("edge.example.com"));
    check("# ops\nhttps://{{ V }}:8443 {\n}\n", "edge.example.com/x", Err(NOT_A_SITE));
    check("# ops\n{{ V }}, other.example.com {\n}\n", "(x)", Err(NOT_A_SITE));
    check(
        "# ops\nother.example.com {{ V }} {\n}\n",
        "import",
        Err("ops/Caddyfile.tpl:2: V is `import`, which Caddy reads as its import directive at the start of a line"),
    );
}

#[test]
fn the_partner_domain_cannot_turn_the_site_into_a_snippet() {
    let bundle = StackBundle::partner_edge();
    let source = bundle.template_source("Caddyfile.tera").unwrap();
    let line = source.lines().position(|l| l.contains("{{ CADDY_SITE }}")).unwrap() + 1;
    for domain in ["(x)", "import", "@site", "edge.example.com/admin"] {
        let v = vars(&bundle, "full.env", &[], &[("PARTNER_DOMAIN", domain)]);
        let err = Renderer::new(&bundle).render_template("caddy", None, &v).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("caddy:{line}: CADDY_SITE (its stack default \"{{{{ PARTNER_DOMAIN }}}}\") ")),
            "{domain:?}: {err}"
        );
        let err = Renderer::new(&bundle).render_stack(&v, &BTreeMap::new()).unwrap_err().to_string();
        assert!(err.starts_with(&format!("caddy:{line}: CADDY_SITE")), "{domain:?}: {err}");
    }
    // The operator's legacy template, with the domain right at the site address.
    let legacy = std::fs::read_to_string(crate::support::fixture_path("Caddyfile.tpl")).unwrap();
    let legacy_line = legacy.lines().position(|l| l.starts_with("{{PARTNER_DOMAIN}}")).unwrap() + 1;
    let v = vars(&bundle, "caddy.env", &[], &[("PARTNER_DOMAIN", "(x)")]);
    let err =
        Renderer::new(&bundle).render_template("caddy", Some((Path::new("Caddyfile.tpl"), &legacy)), &v).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "Caddyfile.tpl:{legacy_line}: PARTNER_DOMAIN is not a site address: Caddy takes [scheme://]host[:port] here"
        )
    );
}

#[test]
fn a_line_cannot_start_with_caddyfile_syntax() {
    // A map key, the first token of a line inside a block.
    let map = "s {\n\tmap {a} {b} {\n\t\t{{ V }} x\n\t}\n}\n";
    check(map, "127.0.0.1:3081", Ok("127.0.0.1:3081"));
    check(
        map,
        "import",
        Err("ops/Caddyfile.tpl:3: V is `import`, which Caddy reads as its import directive at the start of a line"),
    );
    check(
        map,
        "(x)",
        Err(
            "ops/Caddyfile.tpl:3: V is in parentheses, which Caddy reads as a snippet definition at the start of a line",
        ),
    );
    check(
        map,
        "@m",
        Err("ops/Caddyfile.tpl:3: V starts with '@', which Caddy reads as a named matcher at the start of a line"),
    );
    // Quotes do not help: Caddy's parser looks at the token's text.
    let quoted = "s {\n\t\"{{ V }}\" x\n}\n";
    check(
        quoted,
        "import",
        Err("ops/Caddyfile.tpl:2: V is `import`, which Caddy reads as its import directive at the start of a line"),
    );
    check(quoted, "import x", Ok("import x"));
    // Further along the line, the same words are plain arguments.
    check("s {\n\trespond x {{ V }}\n}\n", "import", Ok("import"));
    check("s {\n\theader X-A {{ V }}\n}\n", "@m", Ok("\"@m\""));
    check("s {\n\theader X-A {{ V }}\n}\n", "(x)", Ok("\"(x)\""));
}

#[test]
fn a_directive_first_argument_cannot_be_a_matcher() {
    let proxy = "s {\n\treverse_proxy {{ V }}\n}\n";
    check(proxy, "127.0.0.1:3081", Ok("127.0.0.1:3081"));
    check(
        proxy,
        "/admin",
        Err(
            "ops/Caddyfile.tpl:2: V starts with '/', which Caddy reads as a path matcher as a directive's first argument",
        ),
    );
    check(
        proxy,
        "*",
        Err("ops/Caddyfile.tpl:2: V is `*`, which Caddy reads as a matcher as a directive's first argument"),
    );
    check(
        proxy,
        "@m",
        Err(
            "ops/Caddyfile.tpl:2: V starts with '@', which Caddy reads as a named matcher as a directive's first argument",
        ),
    );
    check(
        "s {\n\treverse_proxy \"{{ V }}\"\n}\n",
        "/admin",
        Err(
            "ops/Caddyfile.tpl:2: V starts with '/', which Caddy reads as a path matcher as a directive's first argument",
        ),
    );
    // In route and handle blocks too; a subdirective's argument (a health URI) is not a matcher.
    check(
        "s {\n\thandle {\n\t\trespond {{ V }}\n\t}\n}\n",
        "/x",
        Err(
            "ops/Caddyfile.tpl:3: V starts with '/', which Caddy reads as a path matcher as a directive's first argument",
        ),
    );
    check("s {\n\treverse_proxy {\n\t\thealth_uri {{ V }}\n\t}\n}\n", "/api/health", Ok("/api/health"));
    // The template's own prefix is the template's choice.
    check("s {\n\treverse_proxy /api{{ V }}\n}\n", "/x", Ok("/x"));
}

#[test]
fn a_watchdog_command_cannot_carry_a_systemd_prefix() {
    let bundle = StackBundle::partner_edge();
    let source = bundle.template_source("edge-watchdog.service.tera").unwrap();
    let line = source.lines().position(|l| l.starts_with("ExecStart=")).unwrap() + 1;
    let render = |bin: &str| {
        let v = vars(&bundle, "full.env", &[], &[("WATCHDOG_BIN", bin)]);
        Renderer::new(&bundle).render_template("watchdog-service", None, &v)
    };
    for prefix in ['+', '-', '@', ':', '!', '|'] {
        let err = render(&format!("{prefix}/tmp/payload")).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "watchdog-service:{line}: WATCHDOG_BIN starts with '{prefix}', which systemd reads as a command prefix ('+' runs the command with full privileges, '-' ignores its failure...): give the command's path"
            )
        );
    }
    assert_eq!(
        render("").unwrap_err().to_string(),
        format!("watchdog-service:{line}: WATCHDOG_BIN is empty where systemd needs the command's path")
    );
    let unit = render("/opt/edge tools/watchdog").unwrap();
    assert!(unit.contains("\nExecStart=\"/opt/edge tools/watchdog\" --once\n"), "{unit}");
    // The whole stack refuses it too: the root-run unit is never written.
    let v = vars(&bundle, "full.env", &[], &[("WATCHDOG_BIN", "+/tmp/payload")]);
    let err = Renderer::new(&bundle).render_stack(&v, &BTreeMap::new()).unwrap_err().to_string();
    assert!(err.starts_with(&format!("watchdog-service:{line}: WATCHDOG_BIN starts with '+'")), "{err}");
}
