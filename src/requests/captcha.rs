//! The web form's verification code: random digits, drawn as a PNG with
//! jitter and noise, so a script that posts forms has to read an image.

use rand::Rng;

/// Digits in a code.
pub const LEN: usize = 5;

/// 5x7 glyphs of the digits, one row per byte, high bit on the left.
const GLYPHS: [[u8; 7]; 10] = [
    [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E], // 0
    [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E], // 1
    [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F], // 2
    [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E], // 3
    [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02], // 4
    [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E], // 5
    [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E], // 6
    [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08], // 7
    [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E], // 8
    [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C], // 9
];

const SCALE: usize = 6;
const CELL: usize = 6 * SCALE + 4;
pub const WIDTH: usize = LEN * CELL + 16;
pub const HEIGHT: usize = 7 * SCALE + 24;

/// A new random code.
pub fn new_code() -> String {
    let mut rng = rand::rng();
    (0..LEN)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

/// A new random identifier for a challenge (128 bits, hex).
pub fn new_id() -> String {
    let n: u128 = rand::rng().random();
    format!("{n:032x}")
}

/// The code drawn as a grayscale PNG.
pub fn png(code: &str) -> anyhow::Result<Vec<u8>> {
    let mut rng = rand::rng();
    let mut px = vec![235u8; WIDTH * HEIGHT];
    // Speckles behind the digits.
    for _ in 0..WIDTH * HEIGHT / 12 {
        let i = rng.random_range(0..px.len());
        px[i] = rng.random_range(150..230);
    }
    for (n, d) in code.bytes().enumerate() {
        let glyph = &GLYPHS[usize::from(d.saturating_sub(b'0')).min(9)];
        let x0 = 8 + n * CELL + rng.random_range(0..4);
        let y0 = 10 + rng.random_range(0..10);
        let ink = rng.random_range(20..90);
        for (row, bits) in glyph.iter().enumerate() {
            // A little slant per row.
            let shift = (row * rng.random_range(0..2)) / 2;
            for col in 0..5 {
                if bits & (0x10 >> col) == 0 {
                    continue;
                }
                for dy in 0..SCALE {
                    for dx in 0..SCALE {
                        let x = x0 + shift + col * SCALE + dx;
                        let y = y0 + row * SCALE + dy;
                        if x < WIDTH && y < HEIGHT {
                            px[y * WIDTH + x] = ink;
                        }
                    }
                }
            }
        }
    }
    // Lines across.
    for _ in 0..4 {
        let (mut y, dy) = (
            rng.random_range(0..HEIGHT) as f32,
            rng.random_range(-0.3f32..0.3),
        );
        for x in 0..WIDTH {
            let yi = y as usize;
            if yi < HEIGHT {
                px[yi * WIDTH + x] = 60;
            }
            y = (y + dy).clamp(0.0, (HEIGHT - 1) as f32);
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, WIDTH as u32, HEIGHT as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header()?;
        w.write_image_data(&px)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_digits_and_images_are_png() {
        let c = new_code();
        assert_eq!(c.len(), LEN);
        assert!(c.bytes().all(|b| b.is_ascii_digit()));
        assert_ne!(new_id(), new_id());
        let img = png(&c).unwrap();
        assert_eq!(&img[..8], b"\x89PNG\r\n\x1a\n");
        let decoder = png::Decoder::new(std::io::Cursor::new(img));
        let reader = decoder.read_info().unwrap();
        assert_eq!(reader.info().width as usize, WIDTH);
    }
}
