//! The loss curve written next to each adapter (`loss.png`): training loss per step in blue,
//! held-out loss at each evaluation in orange, on linear axes with labelled ticks.
//! Drawn here into an RGB buffer with a 5x7 pixel font, so it needs no system fonts.

use std::path::Path;

use crate::{Error, Result};

const W: usize = 720;
const H: usize = 420;
const LEFT: usize = 64;
const RIGHT: usize = 20;
const TOP: usize = 36;
const BOTTOM: usize = 44;
const BLUE: [u8; 3] = [31, 119, 180];
const ORANGE: [u8; 3] = [255, 127, 14];
const GREY: [u8; 3] = [220, 220, 220];
const INK: [u8; 3] = [40, 40, 40];

struct Canvas {
    px: Vec<u8>,
}

impl Canvas {
    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if (0..W as i64).contains(&x) && (0..H as i64).contains(&y) {
            let i = (y as usize * W + x as usize) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    /// Bresenham, `thick` pixels wide.
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: [u8; 3], thick: i64) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            for t in 0..thick {
                self.set(x, y + t, c);
            }
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    fn text(&mut self, s: &str, x: i64, y: i64, c: [u8; 3]) {
        for (i, ch) in s.chars().enumerate() {
            let rows = glyph(ch);
            for (r, bits) in rows.iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        self.set(x + i as i64 * 6 + col, y + r as i64, c);
                    }
                }
            }
        }
    }
}

/// 5x7 glyphs for the characters the plot writes.
fn glyph(c: char) -> [u8; 7] {
    match c {
        '0' => [0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e],
        '1' => [0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e],
        '2' => [0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f],
        '3' => [0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e],
        '4' => [0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02],
        '5' => [0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e],
        '6' => [0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e],
        '7' => [0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e],
        '9' => [0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c],
        '.' => [0, 0, 0, 0, 0, 0x0c, 0x0c],
        '-' => [0, 0, 0, 0x1f, 0, 0, 0],
        'a' => [0, 0, 0x0e, 0x01, 0x0f, 0x11, 0x0f],
        'e' => [0, 0, 0x0e, 0x11, 0x1f, 0x10, 0x0e],
        'h' => [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11],
        'i' => [0x04, 0, 0x0c, 0x04, 0x04, 0x04, 0x0e],
        'l' => [0x0c, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e],
        'n' => [0, 0, 0x16, 0x19, 0x11, 0x11, 0x11],
        'o' => [0, 0, 0x0e, 0x11, 0x11, 0x11, 0x0e],
        'p' => [0, 0, 0x1e, 0x11, 0x1e, 0x10, 0x10],
        'r' => [0, 0, 0x16, 0x19, 0x10, 0x10, 0x10],
        's' => [0, 0, 0x0e, 0x10, 0x0e, 0x01, 0x1e],
        't' => [0x08, 0x08, 0x1c, 0x08, 0x08, 0x09, 0x06],
        'u' => [0, 0, 0x11, 0x11, 0x11, 0x13, 0x0d],
        'v' => [0, 0, 0x11, 0x11, 0x11, 0x0a, 0x04],
        'd' => [0x01, 0x01, 0x0d, 0x13, 0x11, 0x11, 0x0f],
        _ => [0; 7],
    }
}

/// Writes the loss curves as a PNG at `path`. `train` and `eval` are (step, loss) pairs.
pub fn loss_curve(train: &[(usize, f64)], eval: &[(usize, f64)], path: &Path) -> Result<()> {
    let mut c = Canvas {
        px: vec![255; W * H * 3],
    };
    let all: Vec<(usize, f64)> = train
        .iter()
        .chain(eval)
        .copied()
        .filter(|p| p.1.is_finite())
        .collect();
    let max_step = all.iter().map(|p| p.0).max().unwrap_or(1).max(1) as f64;
    let (lo, hi) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let (lo, hi) = if lo < hi { (lo, hi) } else { (0.0, 1.0) };
    let (pw, ph) = ((W - LEFT - RIGHT) as f64, (H - TOP - BOTTOM) as f64);
    let to_px = |(s, l): (usize, f64)| {
        (
            LEFT as i64 + (s as f64 / max_step * pw) as i64,
            TOP as i64 + ((hi - l) / (hi - lo) * ph) as i64,
        )
    };
    // Grid and tick labels: five on each axis.
    for i in 0..=4 {
        let y = TOP as i64 + (i as f64 / 4.0 * ph) as i64;
        c.line((LEFT as i64, y), ((W - RIGHT) as i64, y), GREY, 1);
        let v = hi - (hi - lo) * i as f64 / 4.0;
        c.text(&format!("{v:.2}"), 8, y - 3, INK);
        let x = LEFT as i64 + (i as f64 / 4.0 * pw) as i64;
        c.line((x, TOP as i64), (x, (H - BOTTOM) as i64), GREY, 1);
        let s = format!("{}", (max_step * i as f64 / 4.0).round() as u64);
        c.text(&s, x - 3 * s.len() as i64, (H - BOTTOM + 8) as i64, INK);
    }
    c.line(
        (LEFT as i64, (H - BOTTOM) as i64),
        ((W - RIGHT) as i64, (H - BOTTOM) as i64),
        INK,
        1,
    );
    c.line(
        (LEFT as i64, TOP as i64),
        (LEFT as i64, (H - BOTTOM) as i64),
        INK,
        1,
    );
    c.text("step", (W / 2 - 12) as i64, (H - 16) as i64, INK);
    for (series, colour, label, at) in [
        (train, BLUE, "train loss", 0),
        (eval, ORANGE, "held-out loss", 90),
    ] {
        let pts: Vec<(i64, i64)> = series
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|&p| to_px(p))
            .collect();
        for w in pts.windows(2) {
            c.line(w[0], w[1], colour, 2);
        }
        for &(x, y) in &pts {
            if series.len() < 60 {
                for d in -2..=2 {
                    c.line((x - 2, y + d), (x + 2, y + d), colour, 1);
                }
            }
        }
        let x = (LEFT + 10 + at) as i64;
        c.line((x, 16), (x + 14, 16), colour, 3);
        c.text(label, x + 18, 13, INK);
    }
    let file = std::fs::File::create(path).map_err(|e| Error::Io(path.display().to_string(), e))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), W as u32, H as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let io =
        |e: png::EncodingError| Error::Io(path.display().to_string(), std::io::Error::other(e));
    let mut w = enc.write_header().map_err(io)?;
    w.write_image_data(&c.px).map_err(io)?;
    w.finish().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_curve_is_a_png_with_both_series_drawn() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("loss.png");
        let train: Vec<(usize, f64)> = (1..=100).map(|s| (s, 5.0 / s as f64 + 0.5)).collect();
        loss_curve(&train, &[(50, 1.0), (100, 0.7)], &p).unwrap();
        let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&p).unwrap()));
        let mut r = decoder.read_info().unwrap();
        let mut buf = vec![0; r.output_buffer_size().unwrap()];
        let info = r.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (W as u32, H as u32));
        let count = |c: [u8; 3]| buf.chunks(3).filter(|p| *p == c).count();
        assert!(
            count(BLUE) > 500 && count(ORANGE) > 50,
            "{} {}",
            count(BLUE),
            count(ORANGE)
        );
    }
}
