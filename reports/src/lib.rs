//! Self-contained HTML reports for KRILL: the conformance-vector report
//! (`krill vectors --html FILE`) and the generic [`page`] (tables and
//! inline-SVG line plots) that run and sweep reports are built from.
//!
//! Reports are single files with inline CSS and no scripts, so they can be
//! attached to a CI run or mailed as they are.

use std::fmt::Write as _;

pub mod page;

/// One vector case as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorRow {
    /// Core module the case tests.
    pub module: String,
    /// Case name.
    pub name: String,
    /// Spec vector or "own".
    pub source: String,
    /// Computed values, `name = value`.
    pub computed: Vec<String>,
    /// Failed expectations; empty when the case passed.
    pub failures: Vec<String>,
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Renders a vector run: a per-module summary table, then every case with
/// its computed values; failing cases first within each module.
pub fn vector_report_html(title: &str, rows: &[VectorRow]) -> String {
    let mut modules: Vec<&str> = rows.iter().map(|r| r.module.as_str()).collect();
    modules.sort_unstable();
    modules.dedup();
    let failed_total = rows.iter().filter(|r| !r.failures.is_empty()).count();

    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>\
         body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}\
         table{{border-collapse:collapse;margin-bottom:1.5em}}td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}}\
         .fail{{background:#fde2e1}}.pass{{background:#e6f4ea}}code{{font-size:.9em}}</style></head><body>\
         <h1>{t}</h1><p>{n} cases, {p} passed, {f} failed.</p>\
         <table><tr><th>module</th><th>cases</th><th>failed</th></tr>",
        t = escape(title),
        n = rows.len(),
        p = rows.len() - failed_total,
        f = failed_total
    );
    for m in &modules {
        let n = rows.iter().filter(|r| r.module == *m).count();
        let f = rows.iter().filter(|r| r.module == *m && !r.failures.is_empty()).count();
        let class = if f == 0 { "pass" } else { "fail" };
        let _ = write!(
            h,
            "<tr class=\"{class}\"><td><a href=\"#{m}\">{m}</a></td><td>{n}</td><td>{f}</td></tr>",
            m = escape(m)
        );
    }
    h.push_str("</table>");
    for m in &modules {
        let _ = write!(
            h,
            "<h2 id=\"{m}\">{m}</h2><table><tr><th>case</th><th>source</th><th>computed</th><th>failures</th></tr>",
            m = escape(m)
        );
        let mut in_module: Vec<&VectorRow> = rows.iter().filter(|r| r.module == *m).collect();
        in_module.sort_by_key(|r| r.failures.is_empty());
        for r in in_module {
            let class = if r.failures.is_empty() { "pass" } else { "fail" };
            let _ = write!(
                h,
                "<tr class=\"{class}\"><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                escape(&r.name),
                escape(&r.source),
                r.computed.iter().map(|c| escape(c)).collect::<Vec<_>>().join("<br>"),
                r.failures.iter().map(|c| escape(c)).collect::<Vec<_>>().join("<br>"),
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(module: &str, name: &str, failures: &[&str]) -> VectorRow {
        VectorRow {
            module: module.into(),
            name: name.into(),
            source: "own".into(),
            computed: vec!["x = 1".into()],
            failures: failures.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn escapes_markup_in_every_field() {
        let html = vector_report_html("<t>", &[row("m<", "a&b", &["got \"1\""])]);
        assert!(!html.contains("<t>"));
        assert!(html.contains("&lt;t&gt;"));
        assert!(html.contains("a&amp;b"));
        assert!(html.contains("got &quot;1&quot;"));
    }

    #[test]
    fn summary_counts_failures_per_module_and_lists_them_first() {
        let rows = [row("field", "ok", &[]), row("field", "bad", &["nope"]), row("dag", "ok", &[])];
        let html = vector_report_html("run", &rows);
        assert!(html.contains("3 cases, 2 passed, 1 failed."));
        assert!(html.contains("<tr class=\"fail\"><td><a href=\"#field\">field</a></td><td>2</td><td>1</td></tr>"));
        assert!(html.contains("<tr class=\"pass\"><td><a href=\"#dag\">dag</a></td><td>1</td><td>0</td></tr>"));
        let field_section = html.split("id=\"field\"").nth(1).unwrap();
        assert!(field_section.find("bad").unwrap() < field_section.find(">ok<").unwrap());
    }
}
