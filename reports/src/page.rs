//! A report page: a title, a few lines of text, tables, and line plots
//! drawn as inline SVG, so the page needs no script, font or image file
//! and opens the same from a CI artifact or a mail.

use std::fmt::Write as _;

use crate::escape;

/// One table row; `status` colours it (pass green, miss red).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Cell texts.
    pub cells: Vec<String>,
    /// `Some(true)` pass, `Some(false)` miss, `None` plain.
    pub status: Option<bool>,
}

/// A table with a heading.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    /// Heading above it.
    pub title: String,
    /// Column names.
    pub header: Vec<String>,
    /// Rows.
    pub rows: Vec<Row>,
}

/// One line of a plot; NaN values break the line.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Legend text.
    pub name: String,
    /// (x, y) points in x order.
    pub points: Vec<(f64, f64)>,
}

/// A line plot.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plot {
    /// Heading.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// The lines.
    pub lines: Vec<Line>,
}

/// A whole page.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    /// `<title>` and `<h1>`.
    pub title: String,
    /// Paragraphs under the title.
    pub intro: Vec<String>,
    /// Tables, then plots.
    pub tables: Vec<Table>,
    /// Plots.
    pub plots: Vec<Plot>,
}

const PALETTE: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];
const W: f64 = 720.0;
const H: f64 = 300.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 160.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 44.0;

/// Rounds a step to 1, 2 or 5 × 10ⁿ so tick labels read well.
fn nice_step(range: f64, ticks: f64) -> f64 {
    let raw = (range / ticks).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return None;
    }
    if hi - lo < 1e-12 {
        let pad = if lo.abs() > 1e-12 { lo.abs() * 0.1 } else { 1.0 };
        return Some((lo - pad, hi + pad));
    }
    Some((lo, hi))
}

fn label(v: f64, step: f64) -> String {
    if step >= 1.0 && v.abs() < 1e9 {
        format!("{v:.0}")
    } else {
        let digits = (-step.log10().floor()).clamp(0.0, 6.0) as usize;
        format!("{v:.digits$}")
    }
}

/// Renders a line plot as an `<svg>` element; a plot without finite
/// points says so instead of drawing empty axes.
pub fn svg_line_plot(p: &Plot) -> String {
    let xs = bounds(p.lines.iter().flat_map(|l| l.points.iter().filter(|q| q.1.is_finite()).map(|q| q.0)));
    let ys = bounds(p.lines.iter().flat_map(|l| l.points.iter().map(|q| q.1)));
    let (Some((x0, x1)), Some((mut y0, y1))) = (xs, ys) else {
        return format!("<p class=\"empty\">{}: no data</p>", escape(&p.title));
    };
    if y0 > 0.0 && y0 < 0.3 * y1 {
        y0 = 0.0;
    }
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let sx = |x: f64| LEFT + (x - x0) / (x1 - x0).max(1e-12) * pw;
    let sy = |y: f64| TOP + ph - (y - y0) / (y1 - y0).max(1e-12) * ph;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" \
         role=\"img\" aria-label=\"{t}\"><rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{pw}\" height=\"{ph}\" \
         fill=\"none\" stroke=\"#999\"/>",
        t = escape(&p.title)
    );
    for (lo, hi, vertical) in [(x0, x1, true), (y0, y1, false)] {
        let step = nice_step(hi - lo, 5.0);
        let mut v = (lo / step).ceil() * step;
        while v <= hi + step * 1e-9 {
            if vertical {
                let x = sx(v);
                let _ = write!(
                    s,
                    "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{y2:.1}\" stroke=\"#eee\"/>\
                     <text x=\"{x:.1}\" y=\"{ty:.1}\" font-size=\"11\" text-anchor=\"middle\">{l}</text>",
                    y2 = TOP + ph,
                    ty = TOP + ph + 14.0,
                    l = label(v, step)
                );
            } else {
                let y = sy(v);
                let _ = write!(
                    s,
                    "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{x2:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
                     <text x=\"{tx:.1}\" y=\"{ty:.1}\" font-size=\"11\" text-anchor=\"end\">{l}</text>",
                    x2 = LEFT + pw,
                    tx = LEFT - 4.0,
                    ty = y + 4.0,
                    l = label(v, step)
                );
            }
            v += step;
        }
    }
    let _ = write!(
        s,
        "<text x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"12\" text-anchor=\"middle\">{xl}</text>\
         <text transform=\"translate(14 {cy:.1}) rotate(-90)\" font-size=\"12\" text-anchor=\"middle\">{yl}</text>",
        x = LEFT + pw / 2.0,
        y = H - 8.0,
        xl = escape(&p.x_label),
        cy = TOP + ph / 2.0,
        yl = escape(&p.y_label)
    );
    for (i, l) in p.lines.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let mut d = String::new();
        let mut pen_down = false;
        for &(x, y) in &l.points {
            if !(x.is_finite() && y.is_finite()) {
                pen_down = false;
                continue;
            }
            let _ = write!(d, "{}{:.1},{:.1} ", if pen_down { "L" } else { "M" }, sx(x), sy(y));
            pen_down = true;
        }
        let single = l.points.iter().filter(|q| q.0.is_finite() && q.1.is_finite()).count() == 1;
        if single {
            if let Some(&(x, y)) = l.points.iter().find(|q| q.0.is_finite() && q.1.is_finite()) {
                let _ = write!(s, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"/>", sx(x), sy(y));
            }
        } else if !d.is_empty() {
            let _ = write!(s, "<path d=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\"/>", d.trim_end());
        }
        let ly = TOP + 10.0 + 16.0 * i as f64;
        let _ = write!(
            s,
            "<line x1=\"{a:.1}\" y1=\"{ly:.1}\" x2=\"{b:.1}\" y2=\"{ly:.1}\" stroke=\"{colour}\" stroke-width=\"3\"/>\
             <text x=\"{c:.1}\" y=\"{ty:.1}\" font-size=\"11\">{n}</text>",
            a = W - RIGHT + 10.0,
            b = W - RIGHT + 28.0,
            c = W - RIGHT + 32.0,
            ty = ly + 4.0,
            n = escape(&l.name)
        );
    }
    s.push_str("</svg>");
    s
}

/// Renders a page as one HTML document with inline CSS and SVG.
pub fn page_html(page: &Page) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>\
         body{{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}}\
         table{{border-collapse:collapse;margin-bottom:1.5em}}td,th{{border:1px solid #ccc;padding:.25em .6em;\
         text-align:left;vertical-align:top}}.fail{{background:#fde2e1}}.pass{{background:#e6f4ea}}\
         svg{{display:block;margin-bottom:1.5em}}.empty{{color:#888}}</style></head><body><h1>{t}</h1>",
        t = escape(&page.title)
    );
    for p in &page.intro {
        let _ = write!(h, "<p>{}</p>", escape(p));
    }
    for t in &page.tables {
        if !t.title.is_empty() {
            let _ = write!(h, "<h2>{}</h2>", escape(&t.title));
        }
        h.push_str("<table><tr>");
        for c in &t.header {
            let _ = write!(h, "<th>{}</th>", escape(c));
        }
        h.push_str("</tr>");
        for r in &t.rows {
            match r.status {
                Some(true) => h.push_str("<tr class=\"pass\">"),
                Some(false) => h.push_str("<tr class=\"fail\">"),
                None => h.push_str("<tr>"),
            }
            for c in &r.cells {
                let _ = write!(h, "<td>{}</td>", escape(c));
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
    }
    for p in &page.plots {
        let _ = write!(h, "<h2>{}</h2>{}", escape(&p.title), svg_line_plot(p));
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plot(points: Vec<(f64, f64)>) -> Plot {
        Plot {
            title: "err <zone>".into(),
            x_label: "t, s".into(),
            y_label: "°C".into(),
            lines: vec![Line { name: "a&b".into(), points }],
        }
    }

    #[test]
    fn nan_breaks_the_line_into_two_moves() {
        let svg = svg_line_plot(&plot(vec![(0.0, 1.0), (1.0, 2.0), (2.0, f64::NAN), (3.0, 1.0), (4.0, 3.0)]));
        let path = svg.split("<path d=\"").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(path.matches('M').count(), 2, "{path}");
        assert_eq!(path.matches('L').count(), 2, "{path}");
        assert!(svg.contains("a&amp;b") && svg.contains("err &lt;zone&gt;"));
    }

    #[test]
    fn points_stay_inside_the_plot_area() {
        let svg = svg_line_plot(&plot(vec![(-5.0, 100.0), (5.0, -100.0)]));
        let path = svg.split("<path d=\"").nth(1).unwrap().split('"').next().unwrap();
        for xy in path.split(' ') {
            let (x, y) = xy[1..].split_once(',').unwrap();
            let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
            assert!((LEFT..=W - RIGHT).contains(&x), "{x}");
            assert!((TOP..=H - BOTTOM).contains(&y), "{y}");
        }
    }

    #[test]
    fn empty_plot_says_no_data() {
        assert!(svg_line_plot(&plot(vec![(0.0, f64::NAN)])).contains("no data"));
    }

    #[test]
    fn page_colours_rows_by_status() {
        let page = Page {
            title: "run".into(),
            intro: vec!["seed 1".into()],
            tables: vec![Table {
                title: "expectations".into(),
                header: vec!["what".into()],
                rows: vec![
                    Row { cells: vec!["ok".into()], status: Some(true) },
                    Row { cells: vec!["miss".into()], status: Some(false) },
                ],
            }],
            plots: vec![plot(vec![(0.0, 1.0), (1.0, 2.0)])],
        };
        let h = page_html(&page);
        assert!(h.contains("<tr class=\"pass\"><td>ok</td>") && h.contains("<tr class=\"fail\"><td>miss</td>"));
        assert!(h.contains("<svg") && h.ends_with("</html>\n"));
    }
}
