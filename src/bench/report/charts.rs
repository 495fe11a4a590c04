//! The report's SVG line charts (plotters): input size against a figure, a line per engine and path.

use std::path::Path;

use plotters::prelude::*;

use crate::error::{Error, ErrorKind, Result};

fn plot_error(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Storage, format!("chart: {e}"))
}

/// One line chart: x = input MB (log scale), a line per series.
pub(super) fn chart(
    path: &Path,
    title: &str,
    y_label: &str,
    lines: &[(String, Vec<(f64, f64)>)],
    guide: Option<f64>,
) -> Result<()> {
    let xs: Vec<f64> = lines.iter().flat_map(|(_, p)| p.iter().map(|x| x.0)).collect();
    let ys: Vec<f64> = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.1))
        .chain(guide)
        .filter(|v| v.is_finite())
        .collect();
    if xs.is_empty() || ys.is_empty() {
        return Ok(());
    }
    let (x0, x1) = xs
        .iter()
        .fold((f64::MAX, f64::MIN), |a, &x| (a.0.min(x), a.1.max(x)));
    let (x0, x1) = (x0 / 1.5, x1 * 1.5);
    let y1 = ys.iter().cloned().fold(0.0, f64::max) * 1.15;
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut c = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d((x0..x1).log_scale(), 0f64..y1.max(1e-9))
        .map_err(plot_error)?;
    c.configure_mesh()
        .x_desc("input CSV (MB, log scale)")
        .y_desc(y_label)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(plot_error)?;
    for (i, (name, points)) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let dashed = name.contains("raw");
        let style = ShapeStyle {
            color,
            filled: true,
            stroke_width: if dashed { 1 } else { 3 },
        };
        c.draw_series(LineSeries::new(points.iter().copied(), style))
            .map_err(plot_error)?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        c.draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))
            .map_err(plot_error)?;
    }
    if let Some(g) = guide {
        c.draw_series(LineSeries::new([(x0, g), (x1, g)], BLACK.stroke_width(1)))
            .map_err(plot_error)?
            .label(format!("target {g}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}
