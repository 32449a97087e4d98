//! The web form's verification code: random digits, drawn as a PNG with
//! jitter and noise, so a script that posts forms has to read an image.
//!
//! Showing a form writes nothing: the code travels in the form as a
//! token, encrypted and authenticated with a key kept in the database
//! (HMAC-SHA-256): `nonce (8 bytes) | expiry (8) | code XOR keystream (5)
//! | MAC (16)`, in hex. The image is drawn from the token; a post checks
//! the MAC, the expiry and the code, and uses the token up by writing its
//! nonce, in the transaction that writes the request.

use hmac::{Hmac, KeyInit, Mac};
use rand::Rng;
use sha2::Sha256;

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

/// The key tokens are sealed with.
pub type Key = [u8; 32];

/// A new random key.
pub fn new_key() -> Key {
    rand::rng().random()
}

fn mac(key: &Key, parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// A sealed code, valid until `expires_at` (unix seconds).
pub fn seal(key: &Key, code: &str, expires_at: i64) -> String {
    let nonce: [u8; 8] = rand::rng().random();
    let stream = mac(key, &[b"code", &nonce]);
    let exp = expires_at.to_be_bytes();
    let enc: Vec<u8> = code.bytes().zip(stream).map(|(c, k)| c ^ k).collect();
    let tag = mac(key, &[b"mac", &nonce, &exp, &enc]);
    let mut t = String::with_capacity(74);
    for b in nonce.iter().chain(&exp).chain(&enc).chain(&tag[..16]) {
        t.push_str(&format!("{b:02x}"));
    }
    t
}

/// What a token holds, once its MAC is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Identifies the token, for single use.
    pub nonce: String,
    pub expires_at: i64,
    pub code: String,
}

/// Opens a token sealed with `key`; `None` when it was not, or is
/// malformed. Expiry is the caller's to check.
pub fn open(key: &Key, token: &str) -> Option<Opened> {
    if token.len() != 2 * (8 + 8 + LEN + 16) || !token.is_ascii() {
        return None;
    }
    let bytes: Vec<u8> = (0..token.len() / 2)
        .map(|i| u8::from_str_radix(&token[2 * i..2 * i + 2], 16))
        .collect::<Result<_, _>>()
        .ok()?;
    let (nonce, rest) = bytes.split_at(8);
    let (exp, rest) = rest.split_at(8);
    let (enc, tag) = rest.split_at(LEN);
    let want = mac(key, &[b"mac", nonce, exp, enc]);
    // Constant-time comparison of the tag.
    let diff = want[..16]
        .iter()
        .zip(tag)
        .fold(0u8, |d, (a, b)| d | (a ^ b));
    if diff != 0 {
        return None;
    }
    let stream = mac(key, &[b"code", nonce]);
    let code: String = enc
        .iter()
        .zip(stream)
        .map(|(c, k)| char::from(c ^ k))
        .collect();
    Some(Opened {
        nonce: token[..16].to_owned(),
        expires_at: i64::from_be_bytes(exp.try_into().ok()?),
        code,
    })
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
        let key = new_key();
        let t = seal(&key, &c, 1_800_000_000);
        let o = open(&key, &t).unwrap();
        assert_eq!((o.code.as_str(), o.expires_at), (c.as_str(), 1_800_000_000));
        assert_ne!(
            seal(&key, &c, 1),
            seal(&key, &c, 1),
            "a fresh nonce each time"
        );
        // Another key, or any changed byte, does not open.
        assert!(open(&new_key(), &t).is_none());
        let mut bad = t.clone().into_bytes();
        bad[20] = if bad[20] == b'0' { b'1' } else { b'0' };
        assert!(open(&key, std::str::from_utf8(&bad).unwrap()).is_none());
        let img = png(&c).unwrap();
        assert_eq!(&img[..8], b"\x89PNG\r\n\x1a\n");
        let decoder = png::Decoder::new(std::io::Cursor::new(img));
        let reader = decoder.read_info().unwrap();
        assert_eq!(reader.info().width as usize, WIDTH);
    }
}
