//! The web form's verification: random digits drawn as a PNG, bent and
//! cluttered, so a script that posts forms has to read an image, and a
//! proof of work the page computes (see [`pow_ok`]), so that each guess
//! costs a script work a person's browser does while the form is filled.
//!
//! Showing a form writes nothing: the code travels in the form as a
//! token, encrypted and authenticated with a key kept in the database
//! (HMAC-SHA-256): `nonce (8 bytes) | expiry (8) | code XOR keystream (5)
//! | MAC (16)`, in lowercase hex, its only accepted spelling. The image is
//! drawn from the token; a post checks the MAC, the expiry, the proof of
//! work and the code, and uses the token up by writing its nonce, in the
//! transaction that writes the request.

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
    let bytes: Vec<u8> = nonce
        .iter()
        .chain(&exp)
        .chain(&enc)
        .chain(&tag[..16])
        .copied()
        .collect();
    hex(&bytes)
}

/// Characters in a token.
pub const TOKEN_LEN: usize = 2 * (8 + 8 + LEN + 16);

/// Lowercase hex, the one spelling of a token.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 * bytes.len());
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// The value of a lowercase hex digit (checked by the caller).
fn hex_value(d: u8) -> u8 {
    match d {
        b'0'..=b'9' => d - b'0',
        _ => d - b'a' + 10,
    }
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
    // One spelling only: lowercase hex of the exact length, as `seal`
    // writes it. Uppercase, a sign (`from_str_radix` takes `+f`), spaces or
    // any other character would give one token many spellings, and each
    // spelling would be a fresh code to the single-use check.
    if token.len() != TOKEN_LEN
        || !token
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    let bytes: Vec<u8> = token
        .as_bytes()
        .chunks(2)
        .map(|p| (hex_value(p[0]) << 4) | hex_value(p[1]))
        .collect();
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
    // The nonce as the bytes say, not as the client spelled it.
    Some(Opened {
        nonce: hex(nonce),
        expires_at: i64::from_be_bytes(exp.try_into().ok()?),
        code,
    })
}

/// Proof of work: the form's page finds an answer, a number written in
/// decimal without leading zeros, such that SHA-256 of `TOKEN:ANSWER` (the
/// token as [`seal`] spells it) begins with `bits` zero bits. That takes
/// about 2^bits hashes to find and one to check; being bound to a
/// single-use token, an answer is good for one post only.
pub fn pow_ok(token: &str, answer: &str, bits: u8) -> bool {
    let a = answer.as_bytes();
    if a.is_empty()
        || a.len() > POW_MAX_LEN
        || !a.iter().all(u8::is_ascii_digit)
        || (a.len() > 1 && a[0] == b'0')
    {
        return false;
    }
    leading_zero_bits(&pow_hash(token, answer)) >= u32::from(bits)
}

/// Digits in a proof-of-work answer at most (any `u64`).
pub const POW_MAX_LEN: usize = 20;

fn pow_hash(token: &str, answer: &str) -> [u8; 32] {
    use sha2::Digest;
    let mut h = Sha256::new();
    h.update(token.as_bytes());
    h.update(b":");
    h.update(answer.as_bytes());
    h.finalize().into()
}

fn leading_zero_bits(hash: &[u8]) -> u32 {
    let mut n = 0;
    for b in hash {
        n += b.leading_zeros();
        if *b != 0 {
            break;
        }
    }
    n
}

/// Finds a proof-of-work answer for `token`, as the page does: counting up
/// from 0.
pub fn solve(token: &str, bits: u8) -> String {
    (0u64..)
        .map(|n| n.to_string())
        .find(|a| pow_ok(token, a, bits))
        .expect("an answer below 2^64")
}

/// The code drawn as a grayscale PNG: digits of varying ink, each leaning
/// its own way, the whole bent by two waves, crossed by strokes as thick
/// and as dark as the digits' own and strewn with stroke-sized fragments,
/// so that neither a threshold nor a line filter separates digits from
/// clutter.
pub fn png(code: &str) -> anyhow::Result<Vec<u8>> {
    let mut rng = rand::rng();
    // The digits, on white.
    let mut ink = vec![255u8; WIDTH * HEIGHT];
    for (n, d) in code.bytes().enumerate() {
        let glyph = &GLYPHS[usize::from(d.saturating_sub(b'0')).min(9)];
        let x0 = (9 + n * CELL + rng.random_range(0..4)) as f32;
        let y0 = (8 + rng.random_range(0..12)) as f32;
        let lean = rng.random_range(-0.3f32..0.3);
        let shade = rng.random_range(20..110);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..5 {
                if bits & (0x10 >> col) == 0 {
                    continue;
                }
                for dy in 0..SCALE {
                    for dx in 0..SCALE {
                        let y = row * SCALE + dy;
                        let x = x0 + (col * SCALE + dx) as f32 + lean * (y as f32 - 21.0);
                        put(&mut ink, x, y0 + y as f32, shade);
                    }
                }
            }
        }
    }
    // Clutter in the digits' own shades and widths: curves across, and
    // short strokes.
    for _ in 0..2 {
        let (mut y, mut slope) = (
            rng.random_range(8.0..(HEIGHT - 8) as f32),
            rng.random_range(-0.4f32..0.4),
        );
        let (width, shade) = (rng.random_range(2..4), rng.random_range(20..110));
        for x in 0..WIDTH {
            for w in 0..width {
                put(&mut ink, x as f32, y + w as f32, shade);
            }
            slope = (slope + rng.random_range(-0.05f32..0.05)).clamp(-0.6, 0.6);
            y = (y + slope).clamp(0.0, (HEIGHT - 5) as f32);
        }
    }
    for _ in 0..12 {
        let (x, y) = (
            rng.random_range(0..WIDTH) as f32,
            rng.random_range(0..HEIGHT) as f32,
        );
        let (len, angle) = (
            rng.random_range(4..14),
            rng.random_range(0.0f32..std::f32::consts::PI),
        );
        let shade = rng.random_range(20..110);
        for i in 0..len {
            for w in 0..3 {
                let t = i as f32;
                put(
                    &mut ink,
                    x + t * angle.cos(),
                    y + t * angle.sin() + w as f32,
                    shade,
                );
            }
        }
    }
    // Bent by two waves, over a speckled ground.
    let (ax, fx, px) = (
        rng.random_range(2.0f32..4.0),
        rng.random_range(0.08f32..0.16),
        rng.random_range(0.0f32..6.3),
    );
    let (ay, fy, py) = (
        rng.random_range(2.0f32..4.0),
        rng.random_range(0.03f32..0.07),
        rng.random_range(0.0f32..6.3),
    );
    let mut px_out = vec![0u8; WIDTH * HEIGHT];
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            let sx = x as f32 + ax * (y as f32 * fx + px).sin();
            let sy = y as f32 + ay * (x as f32 * fy + py).sin();
            let (sx, sy) = (sx.round() as isize, sy.round() as isize);
            let v = if (0..WIDTH as isize).contains(&sx) && (0..HEIGHT as isize).contains(&sy) {
                ink[sy as usize * WIDTH + sx as usize]
            } else {
                255
            };
            px_out[y * WIDTH + x] = if v == 255 {
                rng.random_range(175..250)
            } else {
                v.saturating_add(rng.random_range(0..30))
            };
        }
    }
    let px = px_out;
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

/// Inks one pixel of `img`, if it is inside.
fn put(img: &mut [u8], x: f32, y: f32, shade: u8) {
    let (x, y) = (x.round(), y.round());
    if x >= 0.0 && y >= 0.0 && (x as usize) < WIDTH && (y as usize) < HEIGHT {
        let p = &mut img[y as usize * WIDTH + x as usize];
        *p = (*p).min(shade);
    }
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

    #[test]
    fn a_token_opens_in_one_spelling_only() {
        let key = new_key();
        let t = seal(&key, "12345", 1_800_000_000);
        let o = open(&key, &t).unwrap();
        assert_eq!(o.nonce, t[..16]);
        let mut spellings = vec![
            t.to_uppercase(),
            format!(" {t}"),
            format!("{t}\n"),
            format!("0{t}"),
            t[..TOKEN_LEN - 1].to_owned(),
        ];
        // Each letter in the other case, one at a time.
        for (i, c) in t.char_indices().filter(|(_, c)| c.is_ascii_alphabetic()) {
            spellings.push(format!(
                "{}{}{}",
                &t[..i],
                c.to_ascii_uppercase(),
                &t[i + 1..]
            ));
        }
        // A sign where a byte begins with 0 (`u8::from_str_radix("+f", 16)`
        // is 15), and a digit from another script.
        if let Some(i) = (0..TOKEN_LEN).step_by(2).find(|&i| &t[i..i + 1] == "0") {
            spellings.push(format!("{}+{}", &t[..i], &t[i + 1..]));
        }
        spellings.push(t.replacen(|c: char| c.is_ascii_digit(), "\u{ff10}", 1));
        for s in &spellings {
            assert_eq!(open(&key, s), None, "{s:?}");
        }
    }

    #[test]
    fn a_proof_of_work_is_checked_against_its_token() {
        let key = new_key();
        let t = seal(&key, "12345", 1_800_000_000);
        let answer = solve(&t, 10);
        assert!(pow_ok(&t, &answer, 10));
        assert!(leading_zero_bits(&pow_hash(&t, &answer)) >= 10);
        // Not for another token, nor for more bits than it has.
        let other = seal(&key, "12345", 1_800_000_000);
        let zeros = leading_zero_bits(&pow_hash(&other, &answer));
        assert_eq!(pow_ok(&other, &answer, 10), zeros >= 10);
        let has = leading_zero_bits(&pow_hash(&t, &answer));
        assert!(!pow_ok(&t, &answer, (has + 1) as u8));
        // One spelling of the answer.
        for bad in [
            format!("0{answer}"),
            format!("+{answer}"),
            format!(" {answer}"),
            String::new(),
            "1".repeat(21),
        ] {
            assert!(!pow_ok(&t, &bad, 0), "{bad:?}");
        }
        assert_eq!(leading_zero_bits(&[0, 0, 0x10, 0xff]), 19);
        assert_eq!(leading_zero_bits(&[0x80]), 0);
    }
}
