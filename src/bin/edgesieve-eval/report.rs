//! The report folder: a hand-written SVG timeline of the scores, a contact sheet of the kept
//! frames, and the printed tables.

use image::{imageops, Rgb, RgbImage};
use std::fmt::Write as _;

/// Thumbnail size on the contact sheet (16:9) and thumbnails per row.
pub const THUMB_W: u32 = 160;
pub const THUMB_H: u32 = 90;
pub const SHEET_COLUMNS: u32 = 10;

/// What the timeline shows, one entry per frame.
pub struct Timeline<'a> {
    pub title: &'a str,
    pub uncertainty: &'a [f32],
    pub novelty: &'a [f32],
    pub threshold: &'a [f32],
    pub value: &'a [f32],
    pub kept: &'a [bool],
    /// (first frame index, clip name) of each clip.
    pub clips: &'a [(usize, String)],
}

const W: f64 = 1600.0;
const H: f64 = 460.0;
const LEFT: f64 = 50.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 70.0;

/// Escapes text for SVG/XML content and attributes.
fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(c),
        }
    }
    o
}

/// Top of the y axis: the 99.5th percentile of the finite values shown, at least 1, so that a
/// lone outlier (the first frame's novelty against an empty sketch is 2) does not squash the
/// plot.
fn y_top(series: &[&[f32]]) -> f64 {
    let mut v: Vec<f32> = series
        .iter()
        .flat_map(|s| s.iter())
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if v.is_empty() {
        return 1.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let q = v[((v.len() - 1) as f64 * 0.995).round() as usize];
    (q as f64).max(1.0)
}

/// The timeline as a standalone SVG document. All series share one y axis, 0 at the bottom;
/// its top is [`y_top`]. Larger and non-finite values are drawn at the top edge.
pub fn timeline_svg(t: &Timeline) -> String {
    let n = t.uncertainty.len();
    let ymax = y_top(&[t.uncertainty, t.novelty, t.threshold, t.value]);
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let x = |i: usize| LEFT + pw * (i as f64 + 0.5) / n.max(1) as f64;
    let y = |v: f32| {
        let v = if v.is_finite() { v as f64 } else { ymax };
        TOP + ph * (1.0 - (v / ymax).clamp(0.0, 1.0))
    };
    let mut s = String::with_capacity(64 * 1024 + n * 60);
    let _ = writeln!(
        s,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect x="0" y="0" width="{W}" height="{H}" fill="white"/>
<text x="{LEFT}" y="22" font-size="15">{}</text>"#,
        xml_escape(t.title)
    );
    // Axes and y ticks.
    let _ = writeln!(
        s,
        r##"<g stroke="#888" stroke-width="1"><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{b}"/><line x1="{LEFT}" y1="{b}" x2="{r}" y2="{b}"/></g>"##,
        b = TOP + ph,
        r = LEFT + pw
    );
    for k in 0..=4 {
        let v = ymax * k as f64 / 4.0;
        let yy = y(v as f32);
        let _ = writeln!(
            s,
            r##"<line x1="{x1}" y1="{yy:.1}" x2="{r}" y2="{yy:.1}" stroke="#eee"/><text x="{tx}" y="{ty:.1}" text-anchor="end">{v:.2}</text>"##,
            x1 = LEFT + 1.0,
            r = LEFT + pw,
            tx = LEFT - 5.0,
            ty = yy + 4.0
        );
    }
    // Clip boundaries.
    s.push_str("<g stroke=\"#555\" stroke-dasharray=\"4 3\">\n");
    for (first, _) in t.clips {
        let xx = LEFT + pw * *first as f64 / n.max(1) as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{xx:.1}" y1="{TOP}" x2="{xx:.1}" y2="{b}"/>"#,
            b = TOP + ph
        );
    }
    s.push_str("</g>\n");
    for (first, name) in t.clips {
        let xx = LEFT + pw * *first as f64 / n.max(1) as f64 + 3.0;
        let _ = writeln!(
            s,
            r##"<text x="{xx:.1}" y="{ty}" fill="#333">{}</text>"##,
            xml_escape(name),
            ty = TOP + 12.0
        );
    }
    // Series.
    let series: [(&[f32], &str, f64, &str); 4] = [
        (t.value, "#bbbbbb", 0.8, "value"),
        (t.novelty, "#2a9d8f", 1.0, "novelty"),
        (t.uncertainty, "#1f5fbf", 1.0, "uncertainty"),
        (t.threshold, "#d62828", 1.4, "adaptive threshold (on value)"),
    ];
    for (data, colour, width, _) in &series {
        if data.is_empty() {
            continue;
        }
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="{width}" points=""#
        );
        for (i, &v) in data.iter().enumerate() {
            let _ = write!(s, "{:.1},{:.1} ", x(i), y(v));
        }
        s.push_str("\"/>\n");
    }
    // Kept frames: a marker on the value line and a tick under the axis.
    s.push_str("<g fill=\"#f4a261\" stroke=\"#9c4a00\" stroke-width=\"0.8\">\n");
    for (i, _) in t.kept.iter().enumerate().filter(|(_, k)| **k) {
        let v = t.value.get(i).copied().unwrap_or(0.0);
        let _ = writeln!(
            s,
            r#"<circle cx="{:.1}" cy="{:.1}" r="3"/><rect x="{:.1}" y="{:.1}" width="1.5" height="8"/>"#,
            x(i),
            y(v),
            x(i) - 0.75,
            TOP + ph + 3.0
        );
    }
    s.push_str("</g>\n");
    // x label and legend.
    let _ = writeln!(
        s,
        r#"<text x="{cx}" y="{ly}" text-anchor="middle">frame ({n} frames; ticks under the axis = kept)</text>"#,
        cx = LEFT + pw / 2.0,
        ly = TOP + ph + 26.0
    );
    let ly = H - 14.0;
    let mut lx = LEFT;
    for (_, colour, width, label) in &series {
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{yy}" x2="{x2}" y2="{yy}" stroke="{colour}" stroke-width="{w2}"/><text x="{tx}" y="{ty}">{label}</text>"#,
            yy = ly - 4.0,
            x2 = lx + 24.0,
            w2 = width * 2.0,
            tx = lx + 30.0,
            ty = ly
        );
        lx += 60.0 + 7.0 * label.len() as f64;
    }
    let _ = writeln!(
        s,
        r##"<circle cx="{cx}" cy="{cy}" r="3" fill="#f4a261" stroke="#9c4a00"/><text x="{tx}" y="{ly}">kept frame</text>"##,
        cx = lx + 12.0,
        cy = ly - 4.0,
        tx = lx + 30.0
    );
    let lx = lx + 130.0;
    let _ = writeln!(
        s,
        r##"<line x1="{lx}" y1="{y1}" x2="{lx}" y2="{y2}" stroke="#555" stroke-dasharray="4 3"/><text x="{tx}" y="{ly}">clip boundary</text>"##,
        y1 = ly - 12.0,
        y2 = ly + 2.0,
        tx = lx + 8.0
    );
    s.push_str("</svg>\n");
    s
}

/// A THUMB_W × THUMB_H copy of an image file (triangle filter); None when it cannot be read.
pub fn thumbnail_of_file(path: &std::path::Path) -> Option<RgbImage> {
    Some(shrink(&image::open(path).ok()?.to_rgb8()))
}

fn shrink(img: &RgbImage) -> RgbImage {
    imageops::resize(img, THUMB_W, THUMB_H, imageops::FilterType::Triangle)
}

/// The thumbnails on a grid, `SHEET_COLUMNS` per row, 2 px dark gaps, row-major in the given
/// order. Thumbnails of another size are resized to fit.
pub fn contact_sheet(thumbs: &[RgbImage]) -> RgbImage {
    const GAP: u32 = 2;
    let cols = SHEET_COLUMNS.min(thumbs.len().max(1) as u32);
    let rows = (thumbs.len() as u32).div_ceil(SHEET_COLUMNS).max(1);
    let mut sheet = RgbImage::from_pixel(
        cols * (THUMB_W + GAP) + GAP,
        rows * (THUMB_H + GAP) + GAP,
        Rgb([32, 32, 32]),
    );
    for (i, t) in thumbs.iter().enumerate() {
        let (c, r) = (i as u32 % SHEET_COLUMNS, i as u32 / SHEET_COLUMNS);
        let resized;
        let t = if t.dimensions() == (THUMB_W, THUMB_H) {
            t
        } else {
            resized = imageops::resize(t, THUMB_W, THUMB_H, imageops::FilterType::Triangle);
            &resized
        };
        imageops::replace(
            &mut sheet,
            t,
            (GAP + c * (THUMB_W + GAP)) as i64,
            (GAP + r * (THUMB_H + GAP)) as i64,
        );
    }
    sheet
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(s: &str, pat: &str) -> usize {
        s.matches(pat).count()
    }

    #[test]
    fn svg_is_well_formed_ish() {
        let u = [0.1, 0.5, f32::NAN, 0.3];
        let nov = [f32::INFINITY, 0.4, 0.2, 1.7];
        let thr = [0.2, 0.2, 0.25, 0.3];
        let val = [0.5, 0.1, 0.3, 0.6];
        let kept = [true, false, false, true];
        let clips = vec![(0, "a&b".to_string()), (2, "<night>".to_string())];
        let s = timeline_svg(&Timeline {
            title: "test \"run\"",
            uncertainty: &u,
            novelty: &nov,
            threshold: &thr,
            value: &val,
            kept: &kept,
            clips: &clips,
        });
        assert!(s.starts_with("<?xml"));
        assert!(s.trim_end().ends_with("</svg>"));
        assert_eq!(count(&s, "<svg"), 1);
        assert_eq!(count(&s, "<g"), count(&s, "</g>"));
        assert_eq!(count(&s, "<text"), count(&s, "</text>"));
        assert_eq!(count(&s, "<polyline"), 4);
        // Two kept frames plus the legend marker.
        assert_eq!(count(&s, "<circle"), 3);
        assert!(!s.contains("NaN") && !s.contains("inf"));
        assert!(s.contains("a&amp;b") && s.contains("&lt;night&gt;"));
        assert!(!s.contains("<night>"));
        // Every tag closes: the angle brackets pair up.
        assert_eq!(count(&s, "<"), count(&s, ">"));
        assert_eq!(y_top(&[&[0.2, 0.5]]), 1.0);
        let mut many = vec![1.5f32; 999];
        many.push(2.0);
        assert_eq!(y_top(&[&many]), 1.5);
        // Empty input still gives a document.
        let e = timeline_svg(&Timeline {
            title: "",
            uncertainty: &[],
            novelty: &[],
            threshold: &[],
            value: &[],
            kept: &[],
            clips: &[],
        });
        assert!(e.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn thumbnails_and_sheet_geometry() {
        let dir = std::env::temp_dir().join(format!("edgesieve-thumb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.png");
        RgbImage::from_pixel(64, 36, Rgb([200, 200, 200]))
            .save(&path)
            .unwrap();
        let t = thumbnail_of_file(&path).expect("thumbnail");
        assert_eq!(t.dimensions(), (THUMB_W, THUMB_H));
        std::fs::write(&path, b"not an image").unwrap();
        assert!(thumbnail_of_file(&path).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
        let sheet = contact_sheet(&vec![t.clone(); 12]);
        assert_eq!(sheet.dimensions(), (10 * 162 + 2, 2 * 92 + 2));
        assert_eq!(sheet.get_pixel(5, 5), &Rgb([200, 200, 200]));
        assert_eq!(sheet.get_pixel(0, 0), &Rgb([32, 32, 32]));
        let small = contact_sheet(&[t]);
        assert_eq!(small.dimensions(), (164, 94));
        assert_eq!(contact_sheet(&[]).dimensions(), (164, 94));
    }
}
