//! JPEG encoding of the spooled frames: baseline JPEG at a set quality, frames whose longest side
//! exceeds a bound downscaled to it (keeping the aspect ratio, never upscaled), into a buffer the
//! caller reuses from frame to frame.

use image::codecs::jpeg::JpegEncoder;
use image::imageops::{self, FilterType};
use image::{ExtendedColorType, ImageBuffer, Rgb};

use super::spool::SpoolError;

/// Encodes `rgb` (`width * height` RGB8 pixels, row-major) as a JPEG of `quality` into `out`
/// (cleared first), downscaled so its longest side is at most `max_side`.
pub(super) fn encode(
    out: &mut Vec<u8>,
    rgb: &[u8],
    width: u32,
    height: u32,
    max_side: u32,
    quality: u8,
) -> Result<(), SpoolError> {
    if width == 0 || height == 0 {
        return Err(SpoolError::InvalidFrame {
            message: format!("empty frame {width}x{height}"),
        });
    }
    let expected = (width as usize)
        .checked_mul(height as usize)
        .and_then(|n| n.checked_mul(3));
    if expected != Some(rgb.len()) {
        return Err(SpoolError::InvalidFrame {
            message: format!("{} bytes is not a {width}x{height} RGB8 frame", rgb.len()),
        });
    }
    let (w, h) = fit_within(width, height, max_side);
    out.clear();
    let mut encoder = JpegEncoder::new_with_quality(out, quality);
    let result = if (w, h) == (width, height) {
        encoder.encode(rgb, width, height, ExtendedColorType::Rgb8)
    } else {
        let src: ImageBuffer<Rgb<u8>, &[u8]> = ImageBuffer::from_raw(width, height, rgb)
            .ok_or_else(|| SpoolError::InvalidFrame {
                message: format!("{width}x{height} frame does not fit its buffer"),
            })?;
        let small = imageops::resize(&src, w, h, FilterType::Triangle);
        encoder.encode(small.as_raw(), w, h, ExtendedColorType::Rgb8)
    };
    result.map_err(|e| SpoolError::Encode {
        message: format!("JPEG: {e}"),
    })
}

/// `(width, height)` scaled so the longest side is at most `max_side`, keeping the aspect ratio.
pub(super) fn fit_within(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let long = width.max(height);
    if long <= max_side {
        return (width, height);
    }
    let scale = |side: u32| -> u32 {
        let scaled =
            (u64::from(side) * u64::from(max_side) + u64::from(long) / 2) / u64::from(long);
        (scaled as u32).clamp(1, max_side)
    };
    (scale(width), scale(height))
}

/// Width and height from a JPEG's header (the decoder reads only the headers), or `None` when
/// `jpeg` is not a JPEG or is cut short before its frame header.
pub fn dimensions(jpeg: &[u8]) -> Option<(u32, u32)> {
    use image::ImageDecoder;
    image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(jpeg))
        .ok()
        .map(|d| d.dimensions())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions_of_an_encoded_and_downscaled_frame() {
        let (w, h) = (64u32, 36u32);
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        encode(&mut out, &rgb, w, h, 1000, 90).unwrap();
        assert_eq!(dimensions(&out), Some((64, 36)));
        encode(&mut out, &rgb, w, h, 32, 90).unwrap();
        assert_eq!(dimensions(&out), Some((32, 18)));
        assert_eq!(dimensions(b"not a jpeg"), None);
        assert_eq!(dimensions(&out[..4]), None);
    }
}
