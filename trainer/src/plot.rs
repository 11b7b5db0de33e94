//! Pictures of results: learning curves and confusion matrices as PNG (plotters).

use crate::metrics::Confusion;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use sitfer_contract::labels::{ALL, NUM_CLASSES};
use std::path::Path;
use std::sync::Once;

/// plotters' pure-Rust text rendering needs a registered font; DejaVu Sans comes from the
/// `dejavu` crate so no system font is needed.
fn ensure_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
}

type PlotResult = Result<(), Box<dyn std::error::Error>>;

/// One named series of (x, y) points.
pub struct Series<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, f64)>,
}

/// A line chart with one or more series; `y_range` fixed when given.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    y_range: Option<(f64, f64)>,
) -> PlotResult {
    ensure_font();
    let tmp = path.with_extension("tmp.png");
    {
        let root = BitMapBackend::new(&tmp, (800, 500)).into_drawing_area();
        root.fill(&WHITE)?;
        let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.iter().copied()).collect();
        let (x0, x1) = all
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
        let (mut y0, mut y1) = all
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
        if let Some((a, b)) = y_range {
            y0 = a;
            y1 = b;
        }
        let (x0, x1) = if all.is_empty() || x0 >= x1 {
            (0.0, 1.0f64.max(x1))
        } else {
            (x0, x1)
        };
        let (y0, y1) = if all.is_empty() || y0 >= y1 {
            (0.0, 1.0f64.max(y1))
        } else {
            (y0, y1 + 0.02 * (y1 - y0))
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart.configure_mesh().x_desc(x_label).y_desc(y_label).draw()?;
        for (i, s) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)))?
                .label(s.name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
            chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()?;
        root.present()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// A confusion matrix as a heat map (rows: truth, columns: prediction), each row normalised,
/// with counts and row percentages in the cells.
pub fn confusion_matrix(path: &Path, title: &str, c: &Confusion) -> PlotResult {
    ensure_font();
    let tmp = path.with_extension("tmp.png");
    {
        let root = BitMapBackend::new(&tmp, (760, 700)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(70)
            .y_label_area_size(90)
            // A segmented `a..b` has b - a + 1 cells.
            .build_cartesian_2d(
                (0..NUM_CLASSES - 1).into_segmented(),
                (0..NUM_CLASSES - 1).into_segmented(),
            )?;
        // Segmented axes put each class name under the centre of its cell.
        let name = |v: &SegmentValue<usize>, flip: bool| match v {
            SegmentValue::CenterOf(i) => {
                let k = if flip {
                    NUM_CLASSES.checked_sub(1 + *i)
                } else {
                    Some(*i)
                };
                k.and_then(|k| ALL.get(k))
                    .map(|e| e.name().to_string())
                    .unwrap_or_default()
            }
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(NUM_CLASSES)
            .y_labels(NUM_CLASSES)
            .x_label_formatter(&|v| name(v, false))
            .y_label_formatter(&|v| name(v, true))
            .x_desc("predicted")
            .y_desc("true")
            .label_style(("sans-serif", 14))
            .draw()?;
        for t in 0..NUM_CLASSES {
            let row: u64 = c.counts[t].iter().sum();
            for p in 0..NUM_CLASSES {
                let n = c.counts[t][p];
                let frac = if row > 0 { n as f64 / row as f64 } else { 0.0 };
                let y = NUM_CLASSES - 1 - t;
                let shade = (255.0 * (1.0 - frac)) as u8;
                let (x0, x1) = (SegmentValue::Exact(p), SegmentValue::Exact(p + 1));
                let (y0, y1) = (SegmentValue::Exact(y), SegmentValue::Exact(y + 1));
                let style = ("sans-serif", 14)
                    .into_font()
                    .color(if frac > 0.5 { &WHITE } else { &BLACK });
                let centred = style.pos(Pos::new(HPos::Center, VPos::Center));
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(x0, y0), (x1, y1)],
                    RGBColor(shade, shade, 255).filled(),
                )))?;
                let label = format!("{n} ({:.0}%)", 100.0 * frac);
                chart.draw_series(std::iter::once(Text::new(
                    label,
                    (SegmentValue::CenterOf(p), SegmentValue::CenterOf(y)),
                    centred,
                )))?;
            }
        }
        root.present()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}
