//! The stream source ([`Stream`], a file, FIFO, device or stdin) in its two framings: YUV4MPEG2
//! (the header parser: `W`/`H`/`F`/`C`/`XCOLORRANGE` tags, 8 bit 4:2:0, 4:4:4 and mono; a FRAME
//! line before each frame) and raw (header-less frames back to back, NV12 / I420 / RGB24 of the
//! size in `[input]`). One frame reader for both (truncation errors, reused buffers), handing
//! each frame's planes to the YUV to RGB conversion in `yuv.rs`.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read};

use super::yuv::{
    convert_420, convert_444, convert_mono, deinterleave, Coeffs, Planes420, Upsample,
};
use super::{
    FaultChecks, Frame, FrameSource, InputConfig, InputFormat, SourceError,
    MAX_DIMENSION as MAX_DIM,
};

/// Longest header or FRAME line accepted in a YUV4MPEG2 stream.
const MAX_LINE: usize = 4096;
/// Buffer size of the stream reader.
const READ_BUF: usize = 1 << 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chroma {
    /// 4:2:0, planes Y (w*h), U and V (ceil(w/2)*ceil(h/2) each).
    Yuv420,
    /// 4:4:4, three w*h planes.
    Yuv444,
    /// Y plane only.
    Mono,
    /// Raw NV12 only: the Y plane, then ceil(w/2)*ceil(h/2) interleaved U,V pairs.
    Nv12,
    /// Raw RGB24 only: w*h*3 bytes, already RGB.
    Rgb24,
}

impl Chroma {
    /// What a frame's bytes are, for a truncation error.
    fn what(self) -> &'static str {
        match self {
            Chroma::Yuv420 | Chroma::Yuv444 => "Y/U/V planes",
            Chroma::Mono => "Y plane",
            Chroma::Nv12 => "Y/UV planes",
            Chroma::Rgb24 => "RGB pixels",
        }
    }
}

/// The frames of a stream: from its YUV4MPEG2 header, or from `[input]` for a raw stream.
#[derive(Debug, Clone)]
struct Layout {
    width: u32,
    height: u32,
    /// The y4m header's frame rate; None when it has none, and for a raw stream.
    fps: Option<(u32, u32)>,
    chroma: Chroma,
    /// The pixel format as named: the y4m C tag without the C ("420jpeg" when absent), or the
    /// `input.format` of a raw stream ("nv12").
    colour_tag: String,
    full_range: bool,
}

impl Layout {
    /// The layout of a raw stream, from `options` (which must pass [`InputConfig::validate`]).
    fn raw(options: &InputConfig) -> Layout {
        let chroma = match options.format {
            InputFormat::Nv12 => Chroma::Nv12,
            InputFormat::Rgb24 => Chroma::Rgb24,
            InputFormat::I420 | InputFormat::Y4m => Chroma::Yuv420,
        };
        Layout {
            width: options.width,
            height: options.height,
            fps: None,
            chroma,
            colour_tag: options.format.name().to_string(),
            full_range: options.full_range,
        }
    }

    /// Bytes of pixel data per frame (Y, then U, then V; Y then UV; or RGB).
    fn frame_bytes(&self) -> Option<usize> {
        let w = self.width as usize;
        let h = self.height as usize;
        let luma = w.checked_mul(h)?;
        match self.chroma {
            Chroma::Mono => Some(luma),
            Chroma::Yuv444 | Chroma::Rgb24 => luma.checked_mul(3),
            Chroma::Yuv420 | Chroma::Nv12 => {
                let c = w.div_ceil(2).checked_mul(h.div_ceil(2))?;
                luma.checked_add(c.checked_mul(2)?)
            }
        }
    }
}

/// Parses a YUV4MPEG2 header line (with or without its trailing newline).
fn parse_header(line: &[u8]) -> Result<Layout, String> {
    let text = std::str::from_utf8(line)
        .map_err(|_| "header is not ASCII text".to_string())?
        .trim_end_matches(['\n', '\r']);
    let mut tokens = text.split(' ').filter(|t| !t.is_empty());
    match tokens.next() {
        Some("YUV4MPEG2") => {}
        other => {
            return Err(format!(
                "expected magic 'YUV4MPEG2', found {:?}",
                other.unwrap_or("")
            ))
        }
    }
    let mut width = None;
    let mut height = None;
    let mut fps = None;
    let mut colour_tag = "420jpeg".to_string();
    let mut chroma = Chroma::Yuv420;
    let mut full_range = false;
    for token in tokens {
        // Tags are one ASCII letter; a token starting with anything else (a multi-byte
        // character, say) is an unknown tag, never a split inside a character.
        let at = token.chars().next().map_or(0, char::len_utf8);
        let (tag, value) = token.split_at(at);
        match tag {
            "W" => width = Some(parse_dim(token, value)?),
            "H" => height = Some(parse_dim(token, value)?),
            "F" => {
                let parsed = value
                    .split_once(':')
                    .and_then(|(n, d)| Some((n.parse().ok()?, d.parse().ok()?)));
                fps = Some(parsed.ok_or_else(|| format!("bad frame rate '{token}'"))?);
            }
            "C" => {
                chroma = match value {
                    "420jpeg" | "420paldv" | "420mpeg2" | "420" => Chroma::Yuv420,
                    "444" => Chroma::Yuv444,
                    "mono" => Chroma::Mono,
                    _ => {
                        return Err(format!(
                            "unsupported colour space '{token}' (supported: C420jpeg, C420paldv, \
                             C420mpeg2, C420, C444, Cmono; 8 bit only)"
                        ))
                    }
                };
                colour_tag = value.to_string();
            }
            "X" => {
                if let Some(range) = value.strip_prefix("COLORRANGE=") {
                    full_range = match range {
                        "FULL" => true,
                        "LIMITED" => false,
                        _ => return Err(format!("unknown colour range '{token}'")),
                    };
                }
            }
            // I (interlacing), A (aspect) and unknown tags do not change the pixel layout.
            _ => {}
        }
    }
    let width = width.ok_or("missing width tag W")?;
    let height = height.ok_or("missing height tag H")?;
    Ok(Layout {
        width,
        height,
        fps,
        chroma,
        colour_tag,
        full_range,
    })
}

fn parse_dim(token: &str, value: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(v) if (1..=MAX_DIM).contains(&v) => Ok(v),
        _ => Err(format!("bad dimension '{token}' (expected 1..={MAX_DIM})")),
    }
}

/// Reads one '\n'-terminated line of at most `MAX_LINE` bytes into `buf`.
/// Returns the bytes read and whether the line ended with '\n'.
fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<(usize, bool)> {
    buf.clear();
    let n = reader.take(MAX_LINE as u64).read_until(b'\n', buf)?;
    Ok((n, buf.last() == Some(&b'\n')))
}

/// Fills `buf` unless the reader ends first; returns how many bytes were read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A stream of frames: YUV4MPEG2 (`framed`: a header, a FRAME line before each frame) or raw
/// (frames back to back, layout from `[input]`).
pub(super) struct Stream {
    name: String,
    reader: BufReader<Box<dyn Read + Send>>,
    layout: Layout,
    /// YUV4MPEG2: each frame starts with a FRAME line. False for a raw stream.
    framed: bool,
    frame_bytes: usize,
    coeffs: Coeffs,
    /// FRAME line, reused.
    line: Vec<u8>,
    /// Plane data of one frame, reused.
    data: Vec<u8>,
    /// U then V planes of an NV12 frame, deinterleaved, reused.
    planar_uv: Vec<u8>,
    /// 4:2:0 upsampling buffers, reused.
    upsample: Upsample,
    next_index: u64,
    /// Frame rate for stream time: the y4m header's, else [`InputConfig::fps`].
    fps: f64,
    checks: FaultChecks,
    done: bool,
}

impl FrameSource for Stream {
    fn next_frame(&mut self, frame: &mut Frame) -> Option<Result<(), SourceError>> {
        self.read_next(frame)
    }

    fn describe(&self) -> String {
        let h = &self.layout;
        let range = if h.full_range { "full" } else { "limited" };
        if !self.framed {
            // RGB has no YUV range.
            let range = if h.chroma == Chroma::Rgb24 {
                String::new()
            } else {
                format!(" {range}")
            };
            return format!(
                "raw {} {}x{} {}{range} @{}fps",
                self.name, h.width, h.height, h.colour_tag, self.fps
            );
        }
        let fps = match h.fps {
            Some((n, d)) => format!("{n}:{d}"),
            None => "?fps".to_string(),
        };
        format!(
            "y4m {} {}x{} {} C{} {range}",
            self.name, h.width, h.height, fps, h.colour_tag,
        )
    }

    fn frame_size(&self) -> Option<(u32, u32)> {
        Some((self.layout.width, self.layout.height))
    }

    fn fault_checks(&self) -> FaultChecks {
        self.checks
    }
}

impl Stream {
    /// Opens `reader` as the stream `options.format` says: YUV4MPEG2 (its header read here) or
    /// raw frames of `options.width` x `options.height`.
    pub(super) fn open(
        name: &str,
        reader: Box<dyn Read + Send>,
        options: &InputConfig,
    ) -> Result<Stream, SourceError> {
        let reader = BufReader::with_capacity(READ_BUF, reader);
        if options.format.is_raw() {
            options.validate().map_err(|e| SourceError::Unsupported {
                spec: name.to_string(),
                reason: e.within("input").to_string(),
            })?;
            return Self::new(
                name,
                reader,
                Layout::raw(options),
                false,
                Vec::new(),
                options,
            );
        }
        Self::open_y4m(name, reader, options)
    }

    fn open_y4m(
        name: &str,
        mut reader: BufReader<Box<dyn Read + Send>>,
        options: &InputConfig,
    ) -> Result<Stream, SourceError> {
        let header_err = |message: String| SourceError::Header {
            source_name: name.to_string(),
            message,
        };
        let mut line = Vec::new();
        let (n, complete) = read_line(&mut reader, &mut line)
            .map_err(|e| header_err(format!("cannot read header: {e}")))?;
        if n == 0 {
            return Err(header_err(
                "empty stream, expected a YUV4MPEG2 header".into(),
            ));
        }
        if !complete {
            return Err(header_err(if n >= MAX_LINE {
                format!("header line longer than {MAX_LINE} bytes")
            } else {
                format!("stream ends inside the header line after {n} bytes")
            }));
        }
        let header = parse_header(&line).map_err(header_err)?;
        let pixels = u64::from(header.width) * u64::from(header.height);
        if pixels > options.max_pixels {
            return Err(header_err(format!(
                "frame size {}x{} = {pixels} pixels is over input.max_pixels = {}",
                header.width, header.height, options.max_pixels
            )));
        }
        Self::new(name, reader, header, true, line, options)
    }

    fn new(
        name: &str,
        reader: BufReader<Box<dyn Read + Send>>,
        layout: Layout,
        framed: bool,
        line: Vec<u8>,
        options: &InputConfig,
    ) -> Result<Stream, SourceError> {
        let frame_bytes = layout.frame_bytes().ok_or_else(|| SourceError::Header {
            source_name: name.to_string(),
            message: "frame size overflows".into(),
        })?;
        let coeffs = if layout.full_range {
            Coeffs::FULL
        } else {
            Coeffs::LIMITED
        };
        let fps = match layout.fps {
            Some((n, d)) if n > 0 && d > 0 => f64::from(n) / f64::from(d),
            _ => options.fps,
        };
        Ok(Stream {
            fps,
            next_index: 0,
            name: name.to_string(),
            reader,
            layout,
            framed,
            frame_bytes,
            coeffs,
            line,
            data: Vec::new(),
            planar_uv: Vec::new(),
            upsample: Upsample::default(),
            checks: options.fault_checks(),
            done: false,
        })
    }

    fn read_next(&mut self, frame: &mut Frame) -> Option<Result<(), SourceError>> {
        if self.done {
            return None;
        }
        let index = self.next_index;
        let result = self.read_frame(index);
        match result {
            // Clean end of stream before a FRAME line.
            Ok(false) => {
                self.done = true;
                None
            }
            Ok(true) => {
                self.next_index += 1;
                frame.begin(index, self.fps);
                let _ = write!(frame.name, "{}#{}", self.name, index);
                self.convert(frame);
                Some(Ok(()))
            }
            Err(e) => {
                self.next_index += 1;
                self.done = true;
                frame.begin(index, self.fps);
                let _ = write!(frame.name, "{}#{}", self.name, index);
                Some(Err(e))
            }
        }
    }

    /// Reads frame `index` (its FRAME line when framed, then its pixel data) into `self.data`.
    /// Ok(false) at a clean end of stream (before a FRAME line, or between raw frames).
    fn read_frame(&mut self, index: u64) -> Result<bool, SourceError> {
        if self.framed && !self.read_frame_line(index)? {
            return Ok(false);
        }
        self.data.resize(self.frame_bytes, 0);
        let got = read_full(&mut self.reader, &mut self.data).map_err(|source| {
            SourceError::StreamIo {
                source_name: self.name.clone(),
                frame: index,
                source,
            }
        })?;
        if got == 0 && !self.framed {
            return Ok(false);
        }
        if got < self.frame_bytes {
            return Err(SourceError::Truncated {
                source_name: self.name.clone(),
                frame: index,
                what: self.layout.chroma.what(),
                expected: self.frame_bytes,
                found: got,
            });
        }
        Ok(true)
    }

    /// Reads the FRAME line of frame `index`; Ok(false) at a clean end of stream.
    fn read_frame_line(&mut self, index: u64) -> Result<bool, SourceError> {
        let io_err = |source| SourceError::StreamIo {
            source_name: self.name.clone(),
            frame: index,
            source,
        };
        let (n, complete) = read_line(&mut self.reader, &mut self.line).map_err(io_err)?;
        if n == 0 {
            return Ok(false);
        }
        if !complete && n < MAX_LINE {
            return Err(SourceError::Truncated {
                source_name: self.name.clone(),
                frame: index,
                what: "FRAME line",
                expected: b"FRAME\n".len().max(n + 1),
                found: n,
            });
        }
        let line = &self.line;
        let is_frame = complete
            && line.starts_with(b"FRAME")
            && matches!(line.get(5), Some(b'\n' | b' ' | b'\r'));
        if !is_frame {
            let shown = &line[..line.len().min(40)];
            return Err(SourceError::BadFrameLine {
                source_name: self.name.clone(),
                frame: index,
                found: String::from_utf8_lossy(shown).into_owned(),
            });
        }
        Ok(true)
    }

    fn convert(&mut self, frame: &mut Frame) {
        let h = &self.layout;
        let (w, ht) = (h.width as usize, h.height as usize);
        let luma = w * ht;
        frame.width = h.width;
        frame.height = h.height;
        frame.rgb.resize(luma * 3, 0);
        let data = &self.data;
        let k = &self.coeffs;
        match h.chroma {
            Chroma::Mono => convert_mono(&data[..luma], k, &mut frame.rgb),
            Chroma::Yuv444 => {
                let (y, rest) = data.split_at(luma);
                let (u, v) = rest.split_at(luma);
                convert_444(y, u, v, k, &mut frame.rgb);
            }
            Chroma::Rgb24 => frame.rgb.copy_from_slice(&data[..luma * 3]),
            Chroma::Yuv420 | Chroma::Nv12 => {
                let c = w.div_ceil(2) * ht.div_ceil(2);
                let (y, rest) = data.split_at(luma);
                let (u, v) = if h.chroma == Chroma::Nv12 {
                    deinterleave(&rest[..2 * c], &mut self.planar_uv);
                    self.planar_uv.split_at(c)
                } else {
                    rest.split_at(c)
                };
                convert_420(
                    Planes420 { y, u, v, w, h: ht },
                    k,
                    &mut self.upsample,
                    &mut frame.rgb,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_header_token_starting_with_a_multibyte_character_is_an_error_not_a_panic() {
        // Found by tests/fuzz_parsers.rs (y4m_stream): "YUV4MPEG2 \u{174}\n" split inside 'Å'.
        let r = super::parse_header("YUV4MPEG2 \u{c5}\u{b4}".as_bytes());
        assert!(r.is_err(), "{r:?}");
    }

    use super::*;
    use crate::source::tests::stream;
    use std::io::Cursor;

    fn y4m_source(bytes: Vec<u8>) -> Result<Box<dyn FrameSource>, SourceError> {
        Stream::open("mem", Box::new(Cursor::new(bytes)), &InputConfig::default())
            .map(|y| Box::new(y) as Box<dyn FrameSource>)
    }

    fn assert_close(got: &[u8], want: &[u8], tol: u8) {
        assert_eq!(got.len(), want.len());
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                g.abs_diff(w) <= tol,
                "byte {i}: got {g}, want {w} (all: {got:?})"
            );
        }
    }

    #[test]
    fn header_good() {
        let h = parse_header(
            b"YUV4MPEG2 W640 H360 F30000:1001 Ip A1:1 C420jpeg XYSCSS=420JPEG XCOLORRANGE=FULL\n",
        )
        .unwrap();
        assert_eq!((h.width, h.height), (640, 360));
        assert_eq!(h.fps, Some((30000, 1001)));
        assert_eq!(h.chroma, Chroma::Yuv420);
        assert!(h.full_range);
        assert_eq!(h.frame_bytes(), Some(640 * 360 * 3 / 2));

        // Any order, missing C = 420jpeg, default limited range, unknown tags ignored.
        let h = parse_header(b"YUV4MPEG2 H3 Zfoo W5 Xbar=1").unwrap();
        assert_eq!((h.width, h.height), (5, 3));
        assert_eq!(h.chroma, Chroma::Yuv420);
        assert_eq!(h.colour_tag, "420jpeg");
        assert!(!h.full_range);
        assert_eq!(h.fps, None);
        assert_eq!(h.frame_bytes(), Some(15 + 2 * 3 * 2));

        for (tag, chroma) in [
            ("C420paldv", Chroma::Yuv420),
            ("C420mpeg2", Chroma::Yuv420),
            ("C420", Chroma::Yuv420),
            ("C444", Chroma::Yuv444),
            ("Cmono", Chroma::Mono),
        ] {
            let h = parse_header(format!("YUV4MPEG2 W2 H2 {tag}").as_bytes()).unwrap();
            assert_eq!(h.chroma, chroma, "{tag}");
        }
    }

    #[test]
    fn header_errors() {
        let e = parse_header(b"YUV4MPEG2 H360 F25:1\n").unwrap_err();
        assert!(e.contains("W"), "{e}");
        let e = parse_header(b"YUV4MPEG2 W10 F25:1\n").unwrap_err();
        assert!(e.contains("H"), "{e}");
        let e = parse_header(b"YUV4MPEG2 W4 H4 C422\n").unwrap_err();
        assert!(e.contains("C422"), "{e}");
        let e = parse_header(b"YUV4MPEG2 W4 H4 C420p10 XYSCSS=420P10\n").unwrap_err();
        assert!(e.contains("C420p10"), "{e}");
        let e = parse_header(b"YUV4MPEG W4 H4\n").unwrap_err();
        assert!(e.contains("magic"), "{e}");
        let e = parse_header(b"YUV4MPEG2 W0 H4\n").unwrap_err();
        assert!(e.contains("W0"), "{e}");

        // Through the source: fatal Header errors naming the source.
        let Err(e) = y4m_source(b"YUV4MPEG2 W4 H4 C422\nFRAME\n".to_vec()) else {
            panic!("C422 accepted");
        };
        assert!(e.is_fatal());
        assert!(matches!(e, SourceError::Header { .. }));
        let msg = e.to_string();
        assert!(msg.contains("mem") && msg.contains("C422"), "{msg}");
        assert!(y4m_source(Vec::new()).is_err());
        assert!(y4m_source(b"YUV4MPEG2 W4 H4".to_vec()).is_err());
    }

    #[test]
    fn header_over_max_pixels_is_refused_before_allocating() {
        // 16384x16384 C444 would be 768 MiB a frame; 1000 bytes follow.
        let mut bytes = b"YUV4MPEG2 W16384 H16384 C444\nFRAME\n".to_vec();
        bytes.extend_from_slice(&[0u8; 1000]);
        let Err(e) = y4m_source(bytes) else {
            panic!("16384x16384 accepted");
        };
        assert!(e.is_fatal() && matches!(e, SourceError::Header { .. }));
        let msg = e.to_string();
        assert!(
            msg.contains("input.max_pixels") && msg.contains("16384x16384"),
            "{msg}"
        );
        // A lower limit refuses a small stream too; at the limit it is read.
        let options = InputConfig {
            max_pixels: 3,
            ..InputConfig::default()
        };
        let small = |bytes: Vec<u8>| Stream::open("mem", Box::new(Cursor::new(bytes)), &options);
        assert!(small(stream("YUV4MPEG2 W2 H2 Cmono", &[vec![16; 4]])).is_err());
        assert!(small(stream("YUV4MPEG2 W3 H1 Cmono", &[vec![16; 3]])).is_ok());
    }

    #[test]
    fn y4m_444_known_values() {
        // 2x2 limited: white, black, red (BT.601 Y=81 U=90 V=240), mid grey.
        let y = [235, 16, 81, 126];
        let u = [128, 128, 90, 128];
        let v = [128, 128, 240, 128];
        let frame0: Vec<u8> = [&y[..], &u, &v].concat();
        let bytes = stream("YUV4MPEG2 W2 H2 F25:1 C444", &[frame0.clone(), frame0]);
        let mut src = y4m_source(bytes).unwrap();
        assert_eq!(src.len_hint(), None);
        assert_eq!(src.describe(), "y4m mem 2x2 25:1 C444 limited");
        let mut f = Frame::new();
        src.next_frame(&mut f).unwrap().unwrap();
        assert_eq!((f.width, f.height, f.index), (2, 2, 0));
        assert_eq!(f.name, "mem#0");
        assert_eq!(&f.rgb[..6], &[255, 255, 255, 0, 0, 0]);
        assert_close(&f.rgb[6..], &[255, 0, 0, 128, 128, 128], 2);
        src.next_frame(&mut f).unwrap().unwrap();
        assert_eq!((f.index, f.name.as_str()), (1, "mem#1"));
        assert!(src.next_frame(&mut f).is_none());
        assert!(src.next_frame(&mut f).is_none());

        // Full range: Y passes through for grey; pure blue Y=29 U=255 V=107.
        let frame0: Vec<u8> = [&[128u8, 29][..], &[128, 255], &[128, 107]].concat();
        let bytes = stream("YUV4MPEG2 W2 H1 C444 XCOLORRANGE=FULL", &[frame0]);
        let mut src = y4m_source(bytes).unwrap();
        src.next_frame(&mut f).unwrap().unwrap();
        assert_eq!(&f.rgb[..3], &[128, 128, 128]);
        assert_close(&f.rgb[3..], &[0, 0, 255], 2);
    }

    #[test]
    fn y4m_mono() {
        let bytes = stream("YUV4MPEG2 W3 H1 Cmono", &[vec![16, 235, 126]]);
        let mut src = y4m_source(bytes).unwrap();
        let mut f = Frame::new();
        src.next_frame(&mut f).unwrap().unwrap();
        assert_eq!(f.rgb, [0, 0, 0, 255, 255, 255, 128, 128, 128]);
    }

    #[test]
    fn y4m_420_known_values_and_odd_size() {
        // 3x3 luma, 2x2 chroma; uniform chroma, so only Y matters.
        let y = [16, 235, 126, 235, 16, 126, 126, 126, 235];
        let frame0: Vec<u8> = [&y[..], &[128; 4], &[128; 4]].concat();
        let bytes = stream("YUV4MPEG2 W3 H3 F30000:1001 Ip A0:0 C420mpeg2", &[frame0]);
        let mut src = y4m_source(bytes).unwrap();
        let mut f = Frame::new();
        src.next_frame(&mut f).unwrap().unwrap();
        assert_eq!((f.width, f.height), (3, 3));
        let want: Vec<u8> = y
            .iter()
            .flat_map(|&y| {
                let g = match y {
                    16 => 0,
                    235 => 255,
                    _ => 128,
                };
                [g, g, g]
            })
            .collect();
        assert_eq!(f.rgb, want);
        assert!(src.next_frame(&mut f).is_none());
    }

    #[test]
    fn y4m_420_chroma_upsampling() {
        // 4x2 luma (all Y=81), 2x1 chroma: left sample red, right sample blue-ish (U=240, V=110).
        // Outer pixels keep their sample; inner pixels blend 3/4 own + 1/4 neighbour.
        let frame0: Vec<u8> = [&[81u8; 8][..], &[90, 240], &[240, 110]].concat();
        let bytes = stream("YUV4MPEG2 W4 H2 C420jpeg", &[frame0]);
        let mut src = y4m_source(bytes).unwrap();
        let mut f = Frame::new();
        src.next_frame(&mut f).unwrap().unwrap();
        let mut want = vec![0u8; 24];
        let k = &Coeffs::LIMITED;
        let blend = |a: u16, b: u16| ((3 * 4 * a + 4 * b + 8) >> 4) as u8;
        let cols = [
            (90, 240),
            (blend(90, 240), blend(240, 110)),
            (blend(240, 90), blend(110, 240)),
            (240, 110),
        ];
        for row in 0..2 {
            for (x, &(u, v)) in cols.iter().enumerate() {
                let i = (row * 4 + x) * 3;
                k.rgb(81, u, v, &mut want[i..i + 3]);
            }
        }
        assert_eq!(f.rgb, want);
        assert_close(&f.rgb[..3], &[255, 0, 0], 2);
        assert!(f.rgb[3] < 255 && f.rgb[3] > f.rgb[6], "{:?}", f.rgb);
    }

    #[test]
    fn y4m_420_matches_naive_reference_on_odd_sizes() {
        let mut seed = 12345u32;
        let mut rnd = move || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (seed >> 16) as u8
        };
        for (w, h) in [(1usize, 1usize), (2, 2), (5, 3), (7, 4), (6, 5), (1, 6)] {
            let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
            let y: Vec<u8> = (0..w * h).map(|_| rnd()).collect();
            let u: Vec<u8> = (0..cw * ch).map(|_| rnd()).collect();
            let v: Vec<u8> = (0..cw * ch).map(|_| rnd()).collect();
            let frame0 = [&y[..], &u, &v].concat();
            let bytes = stream(&format!("YUV4MPEG2 W{w} H{h} XCOLORRANGE=FULL"), &[frame0]);
            let mut src = y4m_source(bytes).unwrap();
            let mut f = Frame::new();
            src.next_frame(&mut f).unwrap().unwrap();
            // Naive per-pixel triangle filter.
            let up = |plane: &[u8], x: usize, yy: usize| -> u8 {
                let (cx, cy) = (x / 2, yy / 2);
                let nx = if x % 2 == 0 {
                    cx.saturating_sub(1)
                } else {
                    (cx + 1).min(cw - 1)
                };
                let ny = if yy % 2 == 0 {
                    cy.saturating_sub(1)
                } else {
                    (cy + 1).min(ch - 1)
                };
                let at = |a: usize, b: usize| u32::from(plane[b * cw + a]);
                let col = |a: usize| 3 * at(a, cy) + at(a, ny);
                ((3 * col(cx) + col(nx) + 8) >> 4) as u8
            };
            let mut want = vec![0u8; w * h * 3];
            for yy in 0..h {
                for x in 0..w {
                    let i = (yy * w + x) * 3;
                    Coeffs::FULL.rgb(
                        y[yy * w + x],
                        up(&u, x, yy),
                        up(&v, x, yy),
                        &mut want[i..i + 3],
                    );
                }
            }
            assert_eq!(f.rgb, want, "{w}x{h}");
        }
    }

    #[test]
    fn y4m_frame_line_with_parameters_and_reuse() {
        let mut bytes = b"YUV4MPEG2 W2 H2 C444\n".to_vec();
        bytes.extend_from_slice(b"FRAME Ixyz\n");
        bytes.extend_from_slice(&[235; 4]);
        bytes.extend_from_slice(&[128; 8]);
        let mut src = y4m_source(bytes).unwrap();
        let mut f = Frame::new();
        f.rgb = vec![7; 1000];
        src.next_frame(&mut f).unwrap().unwrap();
        assert_eq!(f.rgb, [255; 12]);
        assert!(f.rgb.capacity() >= 1000);
    }

    #[test]
    fn y4m_truncated_frame_is_fatal() {
        let good: Vec<u8> = [&[235u8; 9][..], &[128; 4], &[128; 4]].concat();
        let mut bytes = stream("YUV4MPEG2 W3 H3 C420", &[good.clone(), good]);
        bytes.truncate(bytes.len() - 5);
        let mut src = y4m_source(bytes).unwrap();
        let mut f = Frame::new();
        src.next_frame(&mut f).unwrap().unwrap();
        let e = src.next_frame(&mut f).unwrap().unwrap_err();
        assert!(e.is_fatal());
        assert_eq!((f.index, f.name.as_str()), (1, "mem#1"));
        let msg = e.to_string();
        assert!(
            msg.contains("frame 1") && msg.contains("17") && msg.contains("12"),
            "{msg}"
        );
        assert!(matches!(
            e,
            SourceError::Truncated {
                frame: 1,
                expected: 17,
                found: 12,
                ..
            }
        ));
        assert!(src.next_frame(&mut f).is_none());

        // EOF inside the FRAME line.
        let mut bytes = stream("YUV4MPEG2 W1 H1 Cmono", &[vec![16]]);
        bytes.extend_from_slice(b"FRA");
        let mut src = y4m_source(bytes).unwrap();
        src.next_frame(&mut f).unwrap().unwrap();
        let e = src.next_frame(&mut f).unwrap().unwrap_err();
        assert!(e.is_fatal());
        assert!(e.to_string().contains("FRAME line"), "{e}");
        assert!(src.next_frame(&mut f).is_none());

        // Garbage instead of FRAME.
        let mut bytes = stream("YUV4MPEG2 W1 H1 Cmono", &[vec![16]]);
        bytes.extend_from_slice(b"JUNK\n");
        let mut src = y4m_source(bytes).unwrap();
        src.next_frame(&mut f).unwrap().unwrap();
        let e = src.next_frame(&mut f).unwrap().unwrap_err();
        assert!(e.is_fatal() && e.to_string().contains("JUNK"), "{e}");
        assert!(src.next_frame(&mut f).is_none());
    }

    /// `[input]` for a raw stream of `format` at 10 fps.
    fn raw_options(format: InputFormat, width: u32, height: u32) -> InputConfig {
        InputConfig {
            format,
            width,
            height,
            fps: 10.0,
            ..InputConfig::default()
        }
    }

    fn raw_source(options: &InputConfig, bytes: Vec<u8>) -> Stream {
        Stream::open("mem", Box::new(Cursor::new(bytes)), options).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Every frame of `src` until its end; panics on an error.
    fn all_frames(src: &mut dyn FrameSource) -> Vec<Frame> {
        let mut out = Vec::new();
        let mut f = Frame::new();
        while let Some(r) = src.next_frame(&mut f) {
            r.unwrap_or_else(|e| panic!("{e}"));
            out.push(f.clone());
        }
        out
    }

    /// One 4:2:0 picture as I420 (= y4m C420 plane data) and as NV12.
    fn i420_and_nv12(y: &[u8], u: &[u8], v: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let uv: Vec<u8> = u.iter().zip(v).flat_map(|(&u, &v)| [u, v]).collect();
        ([y, u, v].concat(), [y, &uv].concat())
    }

    #[test]
    fn raw_nv12_and_i420_known_values() {
        // 4x2, two 2x2 chroma blocks: left red (BT.601 limited Y=81 U=90 V=240), right white.
        // Frame 1 swaps them. The outer columns keep their own chroma sample exactly.
        let (i420_a, nv12_a) = i420_and_nv12(
            &[81, 81, 235, 235, 81, 81, 235, 235],
            &[90, 128],
            &[240, 128],
        );
        let (i420_b, nv12_b) = i420_and_nv12(
            &[235, 235, 81, 81, 235, 235, 81, 81],
            &[128, 90],
            &[128, 240],
        );
        assert_eq!(nv12_a[8..], [90, 240, 128, 128]);
        let y4m = stream(
            "YUV4MPEG2 W4 H2 C420jpeg",
            &[i420_a.clone(), i420_b.clone()],
        );
        let want = all_frames(&mut *y4m_source(y4m).unwrap());
        for (format, bytes) in [
            (InputFormat::I420, [i420_a, i420_b].concat()),
            (InputFormat::Nv12, [nv12_a, nv12_b].concat()),
        ] {
            let mut src = raw_source(&raw_options(format, 4, 2), bytes);
            assert_eq!(
                src.describe(),
                format!("raw mem 4x2 {format} limited @10fps")
            );
            assert_eq!(src.frame_size(), Some((4, 2)));
            let got = all_frames(&mut src);
            assert_eq!(got.len(), 2, "{format}");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!((g.width, g.height, g.index), (4, 2, i as u64));
                assert_eq!(g.name, format!("mem#{i}"));
                assert_eq!(g.time_ms, 100 * i as u64, "frame i at i * 1000 / fps");
                assert_eq!(g.rgb, w.rgb, "{format} frame {i} differs from y4m C420");
            }
            let (a, b) = (&got[0].rgb, &got[1].rgb);
            assert_close(&a[..3], &[255, 0, 0], 2);
            assert_eq!(&a[9..12], &[255, 255, 255]);
            assert_eq!(&b[..3], &[255, 255, 255]);
            assert_close(&b[9..12], &[255, 0, 0], 2);
        }
    }

    #[test]
    fn raw_nv12_equals_i420_on_odd_sizes_and_full_range() {
        let mut seed = 777u32;
        let mut rnd = move || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (seed >> 16) as u8
        };
        for (w, h) in [(1usize, 1usize), (5, 3), (3, 4), (7, 5), (1, 6)] {
            let c = w.div_ceil(2) * h.div_ceil(2);
            let y: Vec<u8> = (0..w * h).map(|_| rnd()).collect();
            let u: Vec<u8> = (0..c).map(|_| rnd()).collect();
            let v: Vec<u8> = (0..c).map(|_| rnd()).collect();
            let (i420, nv12) = i420_and_nv12(&y, &u, &v);
            assert_eq!(i420.len(), w * h + 2 * c);
            let y4m = stream(
                &format!("YUV4MPEG2 W{w} H{h} C420 XCOLORRANGE=FULL"),
                std::slice::from_ref(&i420),
            );
            let want = all_frames(&mut *y4m_source(y4m).unwrap());
            for (format, bytes) in [(InputFormat::I420, i420), (InputFormat::Nv12, nv12)] {
                let options = InputConfig {
                    full_range: true,
                    ..raw_options(format, w as u32, h as u32)
                };
                // Two frames back to back: the second starts exactly after the first.
                let mut src = raw_source(&options, [&bytes[..], &bytes].concat());
                assert!(
                    src.describe().ends_with(" full @10fps"),
                    "{}",
                    src.describe()
                );
                let got = all_frames(&mut src);
                assert_eq!(got.len(), 2, "{format} {w}x{h}");
                for g in &got {
                    assert_eq!(g.rgb, want[0].rgb, "{format} {w}x{h}");
                }
            }
        }
        // The range: Y=16 is black in limited range, dark grey 16 in full range.
        let grey = |full_range| {
            let options = InputConfig {
                full_range,
                ..raw_options(InputFormat::Nv12, 1, 1)
            };
            all_frames(&mut raw_source(&options, vec![16, 128, 128]))[0]
                .rgb
                .clone()
        };
        assert_eq!(grey(false), [0, 0, 0]);
        assert_eq!(grey(true), [16, 16, 16]);
    }

    #[test]
    fn raw_rgb24_passes_pixels_through() {
        let pixels: Vec<u8> = (0..3 * 3 * 2 * 2).map(|i| (i * 7) as u8).collect();
        let mut src = raw_source(&raw_options(InputFormat::Rgb24, 3, 2), pixels.clone());
        assert_eq!(src.describe(), "raw mem 3x2 rgb24 @10fps");
        let got = all_frames(&mut src);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].rgb, pixels[..18]);
        assert_eq!(got[1].rgb, pixels[18..]);
        assert_eq!((got[1].width, got[1].height, got[1].time_ms), (3, 2, 100));
    }

    #[test]
    fn raw_stream_ending_inside_a_frame_is_fatal_and_an_empty_one_has_no_frames() {
        // 3x3 NV12: 9 + 2 * 2 * 2 = 17 bytes a frame. One frame and 12 bytes of the next.
        let mut bytes = vec![128u8; 17 + 12];
        bytes[..9].fill(235);
        let mut src = raw_source(&raw_options(InputFormat::Nv12, 3, 3), bytes);
        let mut f = Frame::new();
        src.next_frame(&mut f).unwrap().unwrap();
        assert_eq!(f.rgb, [255; 27]);
        let e = src.next_frame(&mut f).unwrap().unwrap_err();
        assert!(e.is_fatal());
        assert_eq!((f.index, f.name.as_str()), (1, "mem#1"));
        assert!(
            matches!(
                e,
                SourceError::Truncated {
                    frame: 1,
                    what: "Y/UV planes",
                    expected: 17,
                    found: 12,
                    ..
                }
            ),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("mem#1") && msg.contains("17") && msg.contains("12"),
            "{msg}"
        );
        assert!(src.next_frame(&mut f).is_none());

        // Cut inside the first frame of an RGB24 stream.
        let mut src = raw_source(&raw_options(InputFormat::Rgb24, 2, 2), vec![0; 5]);
        let e = src.next_frame(&mut f).unwrap().unwrap_err();
        assert!(
            matches!(
                e,
                SourceError::Truncated {
                    frame: 0,
                    expected: 12,
                    found: 5,
                    ..
                }
            ),
            "{e:?}"
        );

        // Nothing at all: a stream with no frames, not an error.
        let mut src = raw_source(&raw_options(InputFormat::I420, 2, 2), Vec::new());
        assert!(src.next_frame(&mut f).is_none());
    }

    #[test]
    fn raw_frames_reuse_their_buffers() {
        // Four 6x4 NV12 frames: after the first, no buffer of the source or the frame moves.
        let frame_bytes = 24 + 2 * 3 * 2;
        let bytes: Vec<u8> = (0..4 * frame_bytes).map(|i| (i * 31 % 251) as u8).collect();
        let mut src = raw_source(&raw_options(InputFormat::Nv12, 6, 4), bytes);
        let mut f = Frame::new();
        src.next_frame(&mut f).unwrap().unwrap();
        let buffers = |src: &Stream, f: &Frame| {
            (
                src.data.as_ptr(),
                src.planar_uv.as_ptr(),
                f.rgb.as_ptr(),
                f.name.as_ptr(),
            )
        };
        let first = buffers(&src, &f);
        assert_eq!(src.planar_uv.len(), 12);
        let mut previous = f.rgb.clone();
        for i in 1..4 {
            src.next_frame(&mut f).unwrap().unwrap();
            assert_eq!(buffers(&src, &f), first, "frame {i} reallocated");
            assert_ne!(f.rgb, previous, "frame {i} was not decoded");
            previous.clone_from(&f.rgb);
        }
        assert!(src.next_frame(&mut f).is_none());
    }
}
