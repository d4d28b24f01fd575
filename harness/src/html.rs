//! HTML and inline SVG shared by the chaos report (`report`) and the load
//! report (`bench`): one escape, one plot frame, a line plot, and the small
//! markdown-to-HTML conversion of the load report.

use std::fmt::Write as _;

/// Text made safe for HTML element content and quoted attribute values.
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

/// The drawing area of one SVG plot: a `width` × `height` view box with
/// `pad` on every side, the data's origin at the bottom left and
/// (`x_max`, `y_max`) at the top right.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    pub width: f64,
    pub height: f64,
    pub pad: f64,
    pub x_max: f64,
    pub y_max: f64,
}

impl Frame {
    /// The horizontal position of data value `x`.
    pub fn x(&self, x: f64) -> f64 {
        self.pad + x / self.x_max * (self.width - 2.0 * self.pad)
    }

    /// The vertical position of data value `y`.
    pub fn y(&self, y: f64) -> f64 {
        self.bottom() - self.span(y)
    }

    /// How tall data value `y` stands above the x axis.
    pub fn span(&self, y: f64) -> f64 {
        y / self.y_max * (self.height - 2.0 * self.pad)
    }

    /// Where the x axis runs.
    pub fn bottom(&self) -> f64 {
        self.height - self.pad
    }

    /// Where the x axis ends.
    pub fn right(&self) -> f64 {
        self.width - self.pad
    }

    /// The opening `<svg>` tag; `width` is its width attribute (`420`, `100%`).
    pub fn open(&self, width: &str, label: &str) -> String {
        format!(
            r#"<svg viewBox="0 0 {} {}" width="{width}" role="img" aria-label="{}">"#,
            self.width,
            self.height,
            escape(label)
        )
    }

    /// The x and y axis lines.
    pub fn axes(&self) -> String {
        format!(
            r##"<line x1="{p}" y1="{b}" x2="{r}" y2="{b}" stroke="#555"/><line x1="{p}" y1="{p}" x2="{p}" y2="{b}" stroke="#555"/>"##,
            p = self.pad,
            b = self.bottom(),
            r = self.right()
        )
    }
}

/// A small line plot of `points` (x, y) in a captioned figure, each point
/// labelled with its value; both axes start at 0.
pub fn line_plot(title: &str, points: &[(f64, f64)], x_label: &str, y_label: &str) -> String {
    let frame = Frame {
        width: 420.0,
        height: 220.0,
        pad: 40.0,
        x_max: points.iter().map(|p| p.0).fold(1.0, f64::max),
        y_max: points.iter().map(|p| p.1).fold(1.0, f64::max),
    };
    let xy = |(x, y): (f64, f64)| (frame.x(x), frame.y(y));
    let mut s = format!("<figure>{}{}", frame.open("420", title), frame.axes());
    let path: Vec<String> = points
        .iter()
        .map(|p| {
            let (x, y) = xy(*p);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let _ = write!(
        s,
        r##"<polyline fill="none" stroke="#1565c0" stroke-width="2" points="{}"/>"##,
        path.join(" ")
    );
    for p in points {
        let (x, y) = xy(*p);
        let _ = write!(
            s,
            r##"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="#1565c0"/><text x="{x:.1}" y="{:.1}" font-size="10" text-anchor="middle">{:.0}</text>"##,
            y - 6.0,
            p.1
        );
        let _ = write!(
            s,
            r#"<text x="{x:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"#,
            frame.bottom() + 14.0,
            p.0
        );
    }
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text><text x="4" y="14" font-size="11">{}</text></svg><figcaption>{}</figcaption></figure>"#,
        frame.width / 2.0,
        frame.height - 4.0,
        escape(x_label),
        escape(y_label),
        escape(title)
    );
    s
}

/// The body of a page from the load report's markdown: headings, tables
/// (the `|---|` rule dropped), paragraphs and list items as paragraphs,
/// `**` emphasis removed.
pub fn from_markdown(md: &str) -> String {
    let mut body = String::new();
    let mut in_table = false;
    for line in md.lines() {
        let esc = escape(line);
        if let Some(h) = esc.strip_prefix("# ") {
            body += &format!("<h1>{h}</h1>");
        } else if let Some(h) = esc.strip_prefix("## ") {
            if in_table {
                body += "</table>";
                in_table = false;
            }
            body += &format!("<h2>{h}</h2>");
        } else if esc.starts_with("|---") {
        } else if esc.starts_with('|') {
            if !in_table {
                body += "<table>";
                in_table = true;
            }
            let cells: Vec<&str> = esc.trim_matches('|').split('|').map(str::trim).collect();
            body += &format!(
                "<tr><td>{}</td></tr>",
                cells.join("</td><td>").replace("**", "")
            );
        } else if !esc.trim().is_empty() {
            if in_table {
                body += "</table>";
                in_table = false;
            }
            body += &format!("<p>{}</p>", esc.trim_start_matches("- ").replace("**", ""));
        }
    }
    if in_table {
        body += "</table>";
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_every_character_html_gives_meaning() {
        assert_eq!(
            escape(r#"<a href="x">Tom & 'Jerry'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
        assert_eq!(
            escape("room_A 2027-01-04 ≥ 0.8×"),
            "room_A 2027-01-04 ≥ 0.8×"
        );
        // Escaped once, not twice.
        assert_eq!(escape("&amp;"), "&amp;amp;");
    }

    #[test]
    fn the_frame_puts_the_origin_bottom_left_and_the_maxima_top_right() {
        let f = Frame {
            width: 420.0,
            height: 220.0,
            pad: 40.0,
            x_max: 10.0,
            y_max: 5.0,
        };
        assert_eq!((f.x(0.0), f.y(0.0)), (40.0, 180.0));
        assert_eq!((f.x(10.0), f.y(5.0)), (380.0, 40.0));
        assert_eq!(f.span(2.5), 70.0);
    }

    #[test]
    fn a_markdown_table_becomes_an_html_table() {
        let body = from_markdown("# T\n\n| a | b |\n|---|---|\n| 1 | **2** |\n\n- x < y");
        assert_eq!(
            body,
            "<h1>T</h1><table><tr><td>a</td><td>b</td></tr><tr><td>1</td><td>2</td></tr></table><p>x &lt; y</p>"
        );
    }
}
