//! The partner edge's Caddyfile options: what `CADDY_VERSION` leaves out for an older Caddy,
//! the runbook's global options, `acme_dns` only when a provider is configured, and the
//! naive pool member that dials through naive's proxy.

use edge_core::StackBundle;
use edge_render::Renderer;

use crate::support::vars;

fn caddyfile(extra: &[(&str, &str)]) -> Result<String, String> {
    let bundle = StackBundle::partner_edge();
    Renderer::new(&bundle)
        .render_template("caddy", None, &vars(&bundle, "full.env", &[], extra))
        .map_err(|e| e.to_string())
}

/// The global options block: from the first `{` line to its closing `}` line.
fn global_options(text: &str) -> String {
    let start = text.find("\n{\n").unwrap() + 1;
    let end = start + text[start..].find("\n}\n").unwrap();
    text[start..end + 3].to_owned()
}

#[test]
fn health_counts_are_rendered_for_caddy_2_7_and_later_only() {
    for (version, counts) in [("2.11", true), ("2.7", true), ("3.0", true), ("2.6", false)] {
        let text = caddyfile(&[("CADDY_VERSION", version)]).unwrap();
        let rendered = text.contains("\t\thealth_passes 2\n\t\thealth_fails 3\n");
        assert_eq!(rendered, counts, "CADDY_VERSION={version}:\n{text}");
        if !counts {
            assert!(text.contains("# health_passes 2 and health_fails 3 need Caddy 2.7 or later"), "{text}");
        }
    }
}

#[test]
fn metrics_are_the_global_option_from_caddy_2_10_on() {
    for (version, global) in [("2.11", true), ("2.10", true), ("2.9", false), ("2.6", false)] {
        let options = global_options(&caddyfile(&[("CADDY_VERSION", version)]).unwrap());
        assert_eq!(options.contains("\n\tmetrics\n"), global, "{version}: {options}");
        assert_eq!(options.contains("\tservers {\n\t\tmetrics\n\t}\n"), !global, "{version}: {options}");
    }
}

#[test]
fn a_caddy_version_that_is_not_major_minor_is_an_error() {
    for bad in ["latest", "2", "2.x", "2.11.7", "1.9", "2.5", ""] {
        let err = caddyfile(&[("CADDY_VERSION", bad)]).unwrap_err();
        assert_eq!(err, "caddy:7: CADDY_VERSION must be MAJOR.MINOR of Caddy 2.6 or later, e.g. 2.11", "{bad:?}");
    }
}

#[test]
fn the_runbooks_global_options_are_rendered() {
    let options = global_options(&caddyfile(&[]).unwrap());
    assert_eq!(
        options,
        "{\n\tadmin 127.0.0.1:2019\n\
         \t# Redirects from HTTP to HTTPS are left to the backend; certificates are still managed.\n\
         \tauto_https disable_redirects\n\tstorage_clean_interval 24h\n\tmetrics\n}\n"
    );
    let options = global_options(
        &caddyfile(&[("ACME_EMAIL", "ops@example.com"), ("CADDY_STORAGE_CLEAN_INTERVAL", "48h")]).unwrap(),
    );
    assert!(options.contains("\n\temail \"ops@example.com\"\n"), "{options}");
    assert!(options.contains("\n\tstorage_clean_interval 48h\n"), "{options}");
}

#[test]
fn acme_dns_is_rendered_only_with_a_provider_and_says_what_it_needs() {
    assert!(!caddyfile(&[]).unwrap().contains("acme_dns"));
    let options = global_options(&caddyfile(&[("ACME_DNS_PROVIDER", "cloudflare")]).unwrap());
    assert!(options.contains("\n\tacme_dns cloudflare\n"), "{options}");
    assert!(options.contains("needs a Caddy built with the dns.providers.cloudflare module"), "{options}");
}

#[test]
fn the_naive_member_dials_through_naives_proxy_from_caddy_2_10_on() {
    let member = |text: &str| text.find("http://127.0.0.1:3083 {\n").map(|i| text[i..].to_owned());
    let current = member(&caddyfile(&[]).unwrap()).unwrap();
    assert!(current.contains("\tbind 127.0.0.1\n"), "{current}");
    assert!(current.contains("\treverse_proxy 127.0.0.1:80 {\n\t\t# naive's proxy"), "{current}");
    assert!(current.contains("\t\theader_up Host {upstream_hostport}\n"), "{current}");
    assert!(current.contains("\t\t\tnetwork_proxy url http://127.0.0.1:3084\n"), "{current}");
    let old = member(&caddyfile(&[("CADDY_VERSION", "2.6")]).unwrap()).unwrap();
    assert!(old.contains("\trespond \"the naive channel needs Caddy 2.10 or later (network_proxy)\" 502\n"), "{old}");
    assert!(!old.contains("reverse_proxy"), "{old}");
    // Without naive in the pool there is no member to serve.
    let bundle = StackBundle::partner_edge();
    let skipped = vars(&bundle, "full.env", &["NAIVE_SERVER"], &[]);
    let text = Renderer::new(&bundle).render_template("caddy", None, &skipped).unwrap();
    assert_eq!(member(&text), None, "{text}");
}
