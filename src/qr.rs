//! QR codes of scannable safety numbers, rendered with the `qrcode` crate.
//!
//! The QR code holds the scannable bytes ([`Fingerprint::scannable`]) in
//! byte mode at error-correction level M. Two renderings are offered: an
//! SVG document and text for a terminal.

use qrcode::render::{svg, unicode};
use qrcode::{EcLevel, QrCode};

use crate::error::{Error, Result};
use crate::fingerprint::Fingerprint;

fn code(data: &[u8]) -> Result<QrCode> {
    QrCode::with_error_correction_level(data, EcLevel::M)
        .map_err(|_| Error::InvalidArgument("data too long for a QR code"))
}

/// An SVG document (UTF-8, with a 4-module quiet zone) of a QR code holding
/// `data`.
pub fn svg(data: &[u8]) -> Result<String> {
    Ok(code(data)?
        .render::<svg::Color<'_>>()
        .min_dimensions(256, 256)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build())
}

/// A QR code holding `data` as lines of text for a terminal (UTF-8 block
/// characters, two modules per character cell, a quiet zone, lines ending in
/// `\n`). It is drawn for the usual light text on a dark background: dark
/// modules are blanks and light modules are blocks.
pub fn terminal_text(data: &[u8]) -> Result<String> {
    let mut s = code(data)?
        .render::<unicode::Dense1x2>()
        .dark_color(unicode::Dense1x2::Light)
        .light_color(unicode::Dense1x2::Dark)
        .quiet_zone(true)
        .build();
    s.push('\n');
    Ok(s)
}

impl Fingerprint {
    /// The scannable form as a QR code in an SVG document (see [`svg()`]).
    pub fn qr_svg(&self) -> Result<String> {
        svg(&self.scannable())
    }

    /// The scannable form as a QR code for a terminal (see [`terminal_text()`]).
    pub fn qr_text(&self) -> Result<String> {
        terminal_text(&self.scannable())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyPair;
    use rand::rngs::OsRng;

    fn fingerprint() -> Fingerprint {
        let a = KeyPair::generate(&mut OsRng).public_key;
        let b = KeyPair::generate(&mut OsRng).public_key;
        Fingerprint::new(2, 5200, b"alice", &a, b"bob", &b).unwrap()
    }

    /// Reads terminal text back into modules (dark = true) and decodes it.
    fn decode_text(text: &str) -> Vec<u8> {
        let rows: Vec<Vec<char>> = text.lines().map(|l| l.chars().collect()).collect();
        let w = rows[0].len();
        let h = rows.len() * 2;
        // A module is dark when its half of the cell is blank.
        let dark = |x: usize, y: usize| -> bool {
            let c = rows[y / 2][x];
            let top_light = c == '\u{2588}' || c == '\u{2580}';
            let bottom_light = c == '\u{2588}' || c == '\u{2584}';
            if y.is_multiple_of(2) {
                !top_light
            } else {
                !bottom_light
            }
        };
        // Scale up so the detector has room.
        let s = 4;
        let mut img =
            rqrr::PreparedImage::prepare_from_bitmap(w * s, h * s, |x, y| dark(x / s, y / s));
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1);
        let mut out = Vec::new();
        grids[0].decode_to(&mut out).unwrap();
        out
    }

    #[test]
    fn terminal_text_decodes_to_the_scannable_bytes() {
        let f = fingerprint();
        let text = f.qr_text().unwrap();
        assert!(text.ends_with('\n'));
        assert_eq!(decode_text(&text), f.scannable());
    }

    #[test]
    fn svg_is_a_document() {
        let svg = fingerprint().qr_svg().unwrap();
        assert!(svg.starts_with("<?xml"));
        assert!(svg.contains("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn too_long() {
        assert!(matches!(
            terminal_text(&[0u8; 4000]),
            Err(Error::InvalidArgument(_))
        ));
    }
}
