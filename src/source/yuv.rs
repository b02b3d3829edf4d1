//! YUV to RGB8 conversion maths of the stream source (y4m and raw): BT.601 coefficients in
//! 16.16 fixed point for limited and full range (`Coeffs`), mono / 4:4:4 / 4:2:0 plane
//! converters, the 4:2:0 chroma upsampler (triangle filter, `Upsample` buffers reused from frame
//! to frame), and the NV12 chroma deinterleaver that feeds it.
//!
//! Tested end to end through the stream source, in `y4m.rs`: known BT.601 values, mono, the
//! 4:2:0 upsampling against a naive per-pixel reference on odd sizes, and NV12 against I420.

/// BT.601 YCbCr -> RGB in 16.16 fixed point.
pub(super) struct Coeffs {
    y_off: i32,
    y_mul: i32,
    rv: i32,
    gu: i32,
    gv: i32,
    bu: i32,
}

impl Coeffs {
    /// Limited ("TV") range: Y 16..235, Cb/Cr 16..240. Y scale 255/219, chroma scale 255/224.
    pub(super) const LIMITED: Coeffs = Coeffs {
        y_off: 16,
        y_mul: 76309, // 1.164384
        rv: 104597,   // 1.596027
        gu: 25675,    // 0.391762
        gv: 53279,    // 0.812968
        bu: 132201,   // 2.017232
    };
    /// Full ("PC"/JPEG) range.
    pub(super) const FULL: Coeffs = Coeffs {
        y_off: 0,
        y_mul: 65536,
        rv: 91881,  // 1.402
        gu: 22553,  // 0.344136
        gv: 46802,  // 0.714136
        bu: 116130, // 1.772
    };

    #[inline(always)]
    pub(super) fn rgb(&self, y: u8, u: u8, v: u8, out: &mut [u8]) {
        let yy = (i32::from(y) - self.y_off) * self.y_mul + (1 << 15);
        let u = i32::from(u) - 128;
        let v = i32::from(v) - 128;
        out[0] = clamp8((yy + self.rv * v) >> 16);
        out[1] = clamp8((yy - self.gu * u - self.gv * v) >> 16);
        out[2] = clamp8((yy + self.bu * u) >> 16);
    }

    #[inline(always)]
    fn grey(&self, y: u8) -> u8 {
        clamp8(((i32::from(y) - self.y_off) * self.y_mul + (1 << 15)) >> 16)
    }
}

#[inline(always)]
fn clamp8(x: i32) -> u8 {
    x.clamp(0, 255) as u8
}

pub(super) fn convert_mono(y: &[u8], k: &Coeffs, rgb: &mut [u8]) {
    for (&y, out) in y.iter().zip(rgb.chunks_exact_mut(3)) {
        out.fill(k.grey(y));
    }
}

pub(super) fn convert_444(y: &[u8], u: &[u8], v: &[u8], k: &Coeffs, rgb: &mut [u8]) {
    for (((&y, &u), &v), out) in y.iter().zip(u).zip(v).zip(rgb.chunks_exact_mut(3)) {
        k.rgb(y, u, v, out);
    }
}

pub(super) struct Planes420<'a> {
    pub(super) y: &'a [u8],
    pub(super) u: &'a [u8],
    pub(super) v: &'a [u8],
    pub(super) w: usize,
    pub(super) h: usize,
}

/// 4:2:0 -> RGB with bilinear ("triangle", as libjpeg's fancy upsampling) chroma upsampling,
/// chroma samples taken as centred between luma samples (C420jpeg siting; C420mpeg2/paldv
/// siting differs by a quarter pixel, which we ignore). Each output pixel blends its chroma
/// sample with weight 3/4 and the nearest neighbour with 1/4, vertically and horizontally;
/// edges repeat the border sample. Odd sizes: chroma planes are ceil(w/2) x ceil(h/2).
pub(super) fn convert_420(p: Planes420<'_>, k: &Coeffs, scratch: &mut Upsample, rgb: &mut [u8]) {
    let (w, h) = (p.w, p.h);
    let cw = w.div_ceil(2);
    let ch = h.div_ceil(2);
    // Blended chroma rows are padded with one repeated sample at each end, so the
    // horizontal pass needs no edge cases or bounds checks.
    scratch.row_u.resize(cw + 2, 0);
    scratch.row_v.resize(cw + 2, 0);
    scratch.hu.resize(2 * cw, 0);
    scratch.hv.resize(2 * cw, 0);
    let Upsample {
        row_u,
        row_v,
        hu,
        hv,
    } = scratch;
    for (row, (yrow, out)) in
        p.y.chunks_exact(w)
            .zip(rgb.chunks_exact_mut(w * 3))
            .enumerate()
            .take(h)
    {
        let cy = row / 2;
        let far = if row % 2 == 0 {
            cy.saturating_sub(1)
        } else {
            (cy + 1).min(ch - 1)
        };
        let (un, uf) = (&p.u[cy * cw..][..cw], &p.u[far * cw..][..cw]);
        let (vn, vf) = (&p.v[cy * cw..][..cw], &p.v[far * cw..][..cw]);
        blend_vertical(un, uf, row_u);
        blend_vertical(vn, vf, row_v);
        blend_horizontal(row_u, hu);
        blend_horizontal(row_v, hv);
        convert_444(yrow, &hu[..w], &hv[..w], k, out);
    }
}

/// Reused buffers of the 4:2:0 upsampler.
#[derive(Default)]
pub(super) struct Upsample {
    /// 3 * near + far chroma row (0..=1020), padded: [c0, c0, c1, .., c_last, c_last].
    row_u: Vec<u16>,
    row_v: Vec<u16>,
    /// Full-resolution chroma row (2 * ceil(w/2) samples).
    hu: Vec<u8>,
    hv: Vec<u8>,
}

/// `out[1..=n] = 3 * near + far`, then repeats the end samples into the padding.
#[inline(always)]
fn blend_vertical(near: &[u8], far: &[u8], out: &mut [u16]) {
    let n = near.len();
    for ((d, &a), &b) in out[1..=n].iter_mut().zip(near).zip(far) {
        *d = 3 * u16::from(a) + u16::from(b);
    }
    out[0] = out[1];
    out[n + 1] = out[n];
}

/// Each chroma sample gives two output samples: (3 * own + left) / 16 and (3 * own + right) / 16.
#[inline(always)]
fn blend_horizontal(padded: &[u16], out: &mut [u8]) {
    for (win, o) in padded.windows(3).zip(out.chunks_exact_mut(2)) {
        let c = 3 * win[1] + 8;
        o[0] = ((c + win[0]) >> 4) as u8;
        o[1] = ((c + win[2]) >> 4) as u8;
    }
}

/// Splits NV12's interleaved chroma (U0 V0 U1 V1 ..) into `planar`: the U plane, then the V
/// plane (`planar` is resized to `uv.len()`, keeping its capacity).
pub(super) fn deinterleave(uv: &[u8], planar: &mut Vec<u8>) {
    planar.resize(uv.len(), 0);
    let (u, v) = planar.split_at_mut(uv.len() / 2);
    for ((pair, u), v) in uv.chunks_exact(2).zip(u).zip(v) {
        *u = pair[0];
        *v = pair[1];
    }
}
