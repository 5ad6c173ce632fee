//! A strict walk over a JPEG's entropy-coded data, without decoding any pixel.
//!
//! Decoders (zune-jpeg, libjpeg, browsers) render a damaged JPEG rather than refuse it: an
//! end-of-image marker in the middle of a scan ends it early and the rest of the picture is
//! grey; bytes overwritten inside a scan desynchronise the Huffman decoder, which then decodes
//! garbage until the next restart marker. That is the right behaviour for a viewer and the wrong
//! one for an enrollment, whose template is matched for years. This walk Huffman-decodes every
//! block of every scan (sequential and progressive, Huffman coded) and refuses the image when
//! the data does not add up exactly:
//! - a marker or the end of the data arrives before a scan's last block;
//! - a Huffman code that the scan's table does not define;
//! - a run of coefficients past the end of a block (or past the scan's spectral band);
//! - restart markers missing, out of order or in the wrong place;
//! - bytes left over between a scan's last block and the next marker;
//! - a component whose coefficients were not all sent, down to the last bit, by the end.
//!
//! Arithmetic-coded, lossless and hierarchical JPEGs are not walked: the decoder refuses them.

/// Why the walk refused the data; the message names the first inconsistency found.
pub(crate) type WalkError = String;

/// Walks `bytes` (a whole JPEG file). `Ok` when every scan decodes to exactly the number of
/// blocks its frame needs and every coefficient of every component is complete.
pub(crate) fn walk(bytes: &[u8]) -> Result<(), WalkError> {
    let mut file = File {
        bytes,
        pos: 0,
        frame: None,
        dc_tables: Default::default(),
        ac_tables: Default::default(),
        dc_steps: [None; 4],
        restart_interval: 0,
    };
    file.walk()
}

/// One Huffman table in the decoding form of the JPEG standard (F.2.2.3).
#[derive(Clone)]
struct Huffman {
    /// Largest code of each length 1..=16, or -1 when there is none.
    max_code: [i32; 17],
    /// Index in `values` of the first code of each length, minus that code.
    offset: [i32; 17],
    values: Vec<u8>,
}

struct Component {
    id: u8,
    h: usize,
    v: usize,
    /// Which quantisation table the component uses.
    quant: usize,
    /// The DC prediction: the last block's quantised DC value (per scan, reset at restarts).
    dc_pred: i32,
    /// Blocks across and down when the component is scanned alone.
    blocks_w: usize,
    blocks_h: usize,
    /// Per zig-zag coefficient: the successive-approximation bit sent so far (`None`: none).
    precision_sent: [Option<u8>; 64],
    /// For progressive refinement: which coefficients of each block are already non-zero.
    nonzero: Vec<u64>,
}

struct Frame {
    progressive: bool,
    /// Sample precision: 8 bits (or 12).
    precision: u8,
    width: usize,
    height: usize,
    h_max: usize,
    v_max: usize,
    components: Vec<Component>,
}

struct File<'a> {
    bytes: &'a [u8],
    pos: usize,
    frame: Option<Frame>,
    dc_tables: [Option<Huffman>; 4],
    ac_tables: [Option<Huffman>; 4],
    /// The DC step of each quantisation table.
    dc_steps: [Option<i32>; 4],
    restart_interval: usize,
}

/// One component's part in a scan.
struct ScanComponent {
    index: usize,
    dc: usize,
    ac: usize,
}

impl<'a> File<'a> {
    fn walk(&mut self) -> Result<(), WalkError> {
        if self.bytes.get(..2) != Some(&[0xFF, 0xD8]) {
            return Err("no start-of-image marker".into());
        }
        self.pos = 2;
        loop {
            let marker = self.next_marker()?;
            match marker {
                0xD9 => return self.check_complete(),
                0xC0..=0xC2 => {
                    let segment = self.segment()?;
                    self.frame(segment, marker == 0xC2)?;
                }
                // Lossless, hierarchical and arithmetic-coded frames: not walked (see above).
                0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return Ok(()),
                0xC4 => {
                    let segment = self.segment()?;
                    self.huffman_tables(segment)?;
                }
                0xDB => {
                    let segment = self.segment()?;
                    self.quantisation_tables(segment)?;
                }
                0xDD => {
                    let segment = self.segment()?;
                    if segment.len() != 2 {
                        return Err("restart interval segment of the wrong length".into());
                    }
                    self.restart_interval =
                        usize::from(u16::from_be_bytes([segment[0], segment[1]]));
                }
                0xDA => {
                    let segment = self.segment()?;
                    self.scan(segment)?;
                }
                0xD0..=0xD7 => return Err("restart marker outside a scan".into()),
                0xD8 => return Err("a second start-of-image marker".into()),
                0x01 => {}
                _ => {
                    self.segment()?;
                }
            }
        }
    }

    /// The next marker's code, skipping fill bytes (FF FF ...).
    fn next_marker(&mut self) -> Result<u8, WalkError> {
        if self.bytes.get(self.pos) != Some(&0xFF) {
            return Err("data where a marker should be".into());
        }
        while self.bytes.get(self.pos) == Some(&0xFF) {
            self.pos += 1;
        }
        let marker = *self
            .bytes
            .get(self.pos)
            .ok_or("the data ends without an end-of-image marker")?;
        self.pos += 1;
        Ok(marker)
    }

    /// A marker segment's payload (after its 2-byte length), moving past it.
    fn segment(&mut self) -> Result<&'a [u8], WalkError> {
        let len = match self.bytes.get(self.pos..self.pos + 2) {
            Some(l) => usize::from(u16::from_be_bytes([l[0], l[1]])),
            None => return Err("the data ends inside a marker segment".into()),
        };
        if len < 2 {
            return Err("a marker segment shorter than its own length field".into());
        }
        let bytes: &'a [u8] = self.bytes;
        let payload = bytes
            .get(self.pos + 2..self.pos + len)
            .ok_or("the data ends inside a marker segment")?;
        self.pos += len;
        Ok(payload)
    }

    fn frame(&mut self, s: &[u8], progressive: bool) -> Result<(), WalkError> {
        if self.frame.is_some() {
            return Err("a second frame header".into());
        }
        if s.len() < 6 {
            return Err("frame header too short".into());
        }
        let height = usize::from(u16::from_be_bytes([s[1], s[2]]));
        let width = usize::from(u16::from_be_bytes([s[3], s[4]]));
        let count = usize::from(s[5]);
        if width == 0 || height == 0 {
            return Err("a frame of zero width or height (a DNL marker is not accepted)".into());
        }
        // The decode's own limits come first (40 megapixels by default); this bounds the
        // walk's memory (a bit per coefficient) if it is called alone on a huge header.
        if width * height > 1 << 28 {
            return Err("a frame too large to check".into());
        }
        if count == 0 || count > 4 || s.len() != 6 + 3 * count {
            return Err("frame header with a bad component list".into());
        }
        let mut components = Vec::with_capacity(count);
        for c in s[6..].chunks_exact(3) {
            let (h, v) = (usize::from(c[1] >> 4), usize::from(c[1] & 15));
            if !(1..=4).contains(&h) || !(1..=4).contains(&v) {
                return Err("a component sampling factor outside 1..4".into());
            }
            if components.iter().any(|k: &Component| k.id == c[0]) {
                return Err("two components with the same id".into());
            }
            components.push(Component {
                id: c[0],
                h,
                v,
                quant: usize::from(c[2] & 3),
                dc_pred: 0,
                blocks_w: 0,
                blocks_h: 0,
                precision_sent: [None; 64],
                nonzero: Vec::new(),
            });
        }
        let h_max = components.iter().map(|c| c.h).max().unwrap_or(1);
        let v_max = components.iter().map(|c| c.v).max().unwrap_or(1);
        for c in &mut components {
            c.blocks_w = (width * c.h).div_ceil(h_max).div_ceil(8);
            c.blocks_h = (height * c.v).div_ceil(v_max).div_ceil(8);
            if progressive {
                c.nonzero = vec![0; c.blocks_w * c.blocks_h];
            }
        }
        if s[0] != 8 && s[0] != 12 {
            return Err("a sample precision other than 8 or 12 bits".into());
        }
        self.frame = Some(Frame {
            progressive,
            precision: s[0],
            width,
            height,
            h_max,
            v_max,
            components,
        });
        Ok(())
    }

    fn quantisation_tables(&mut self, mut s: &[u8]) -> Result<(), WalkError> {
        while let Some(&head) = s.first() {
            let (wide, id) = (head >> 4, usize::from(head & 15));
            let len = if wide == 0 { 64 } else { 128 };
            if wide > 1 || id > 3 || s.len() < 1 + len {
                return Err("a bad quantisation table segment".into());
            }
            let step = if wide == 0 {
                i32::from(s[1])
            } else {
                i32::from(u16::from_be_bytes([s[1], s[2]]))
            };
            if step == 0 {
                return Err("a quantisation step of zero".into());
            }
            self.dc_steps[id] = Some(step);
            s = &s[1 + len..];
        }
        Ok(())
    }

    fn huffman_tables(&mut self, mut s: &[u8]) -> Result<(), WalkError> {
        while !s.is_empty() {
            if s.len() < 17 {
                return Err("Huffman table segment too short".into());
            }
            let (class, id) = (s[0] >> 4, usize::from(s[0] & 15));
            if class > 1 || id > 3 {
                return Err("Huffman table of an unknown class or id".into());
            }
            let counts = &s[1..17];
            let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
            let values = s
                .get(17..17 + total)
                .ok_or("Huffman table segment too short for its values")?;
            let mut max_code = [-1i32; 17];
            let mut offset = [0i32; 17];
            let (mut code, mut index) = (0i32, 0i32);
            for len in 1..=16 {
                let n = i32::from(counts[len - 1]);
                if n > 0 {
                    offset[len] = index - code;
                    code += n;
                    index += n;
                    max_code[len] = code - 1;
                    if code > 1 << len {
                        return Err("Huffman table with more codes than its lengths allow".into());
                    }
                }
                code <<= 1;
            }
            let table = Huffman {
                max_code,
                offset,
                values: values.to_vec(),
            };
            if class == 0 {
                self.dc_tables[id] = Some(table);
            } else {
                self.ac_tables[id] = Some(table);
            }
            s = &s[17 + total..];
        }
        Ok(())
    }

    fn scan(&mut self, s: &[u8]) -> Result<(), WalkError> {
        let frame = self
            .frame
            .as_mut()
            .ok_or("a scan before the frame header")?;
        let count = usize::from(*s.first().ok_or("scan header too short")?);
        if count == 0 || count > 4 || s.len() != 4 + 2 * count {
            return Err("scan header with a bad component list".into());
        }
        let mut members = Vec::with_capacity(count);
        for c in s[1..1 + 2 * count].chunks_exact(2) {
            let index = frame
                .components
                .iter()
                .position(|k| k.id == c[0])
                .ok_or("a scan names a component the frame does not have")?;
            members.push(ScanComponent {
                index,
                dc: usize::from(c[1] >> 4),
                ac: usize::from(c[1] & 15),
            });
        }
        let tail = &s[1 + 2 * count..];
        let (ss, se, ah, al) = (
            usize::from(tail[0]),
            usize::from(tail[1]),
            tail[2] >> 4,
            tail[2] & 15,
        );
        let band_ok = if frame.progressive {
            ss <= se && se <= 63 && (ss == 0) == (se == 0) && (ss == 0 || count == 1) && al <= 13
        } else {
            ss == 0 && se == 63 && ah == 0 && al == 0
        };
        if !band_ok {
            return Err("a scan with an invalid spectral band or approximation".into());
        }
        // Record what this scan sends; a refinement must follow the bits already sent.
        for m in &members {
            let sent = &mut frame.components[m.index].precision_sent[ss..=se];
            for p in sent {
                let expected = if ah == 0 { None } else { Some(ah) };
                if *p != expected || (ah != 0 && al + 1 != ah) {
                    return Err("a scan repeats or skips bits of coefficients".into());
                }
                *p = Some(al);
            }
        }
        // For 8-bit samples a DC value is at most 1024 in magnitude and its difference fits in
        // 11 bits, an AC value in 10 (12-bit samples: 4 more); a decoder out of step with the
        // data soon breaks these bounds.
        let precision = u32::from(frame.precision);
        let (dc_limit, ac_max_size) = (1i32 << (precision + 2), (precision + 2) as u8);
        let mut table_refs = Vec::with_capacity(count);
        for m in &members {
            let dc = if ss == 0 && ah == 0 {
                let table = self.dc_tables.get(m.dc).and_then(Option::as_ref);
                let step = self.dc_steps[frame.components[m.index].quant];
                Some(Dc {
                    table: table.ok_or("a scan uses an undefined DC Huffman table")?,
                    step: step.ok_or("a component uses an undefined quantisation table")?,
                    shift: al,
                    max_size: ac_max_size + 1,
                    limit: dc_limit,
                })
            } else {
                None
            };
            let ac = if se > 0 {
                let t = self.ac_tables.get(m.ac).and_then(Option::as_ref);
                Some(t.ok_or("a scan uses an undefined AC Huffman table")?)
            } else {
                None
            };
            frame.components[m.index].dc_pred = 0;
            table_refs.push((dc, ac));
        }
        // The blocks of one MCU, in order: (member, block index in the component's own grid).
        let (mcus_w, mcus_h) = if count == 1 {
            let c = &frame.components[members[0].index];
            (c.blocks_w, c.blocks_h)
        } else {
            (
                frame.width.div_ceil(8 * frame.h_max),
                frame.height.div_ceil(8 * frame.v_max),
            )
        };
        let progressive = frame.progressive;
        let mut bits = Bits::new(self.bytes, self.pos);
        let mut eob_run = 0u32;
        let total = mcus_w * mcus_h;
        for mcu in 0..total {
            if self.restart_interval > 0 && mcu > 0 && mcu % self.restart_interval == 0 {
                bits.restart(((mcu / self.restart_interval - 1) % 8) as u8)?;
                eob_run = 0;
                for m in &members {
                    frame.components[m.index].dc_pred = 0;
                }
            }
            let (mx, my) = (mcu % mcus_w, mcu / mcus_w);
            for (m, (dc, ac)) in members.iter().zip(&table_refs) {
                let comp = &mut frame.components[m.index];
                let (bw, bh) = if count == 1 { (1, 1) } else { (comp.h, comp.v) };
                for by in 0..bh {
                    for bx in 0..bw {
                        let (x, y) = (mx * bw + bx, my * bh + by);
                        // Blocks past the component's edge (MCU padding) are coded but not kept.
                        let nonzero = if x < comp.blocks_w && y < comp.blocks_h {
                            comp.nonzero.get_mut(y * comp.blocks_w + x)
                        } else {
                            None
                        };
                        let pred = &mut comp.dc_pred;
                        match (progressive, ss, ah, dc, *ac, nonzero) {
                            (false, _, _, Some(dc), Some(ac), _) => {
                                dc.block(&mut bits, pred)?;
                                sequential_block(&mut bits, ac, ac_max_size)?
                            }
                            (true, 0, 0, Some(dc), _, _) => dc.block(&mut bits, pred)?,
                            (true, 0, _, _, _, _) => drop(bits.receive(1)?),
                            (true, _, 0, _, Some(ac), Some(nz)) => {
                                ac_first(&mut bits, ac, ac_max_size, ss, se, &mut eob_run, nz)?
                            }
                            (true, _, _, _, Some(ac), Some(nz)) => {
                                ac_refine(&mut bits, ac, ss, se, &mut eob_run, nz)?
                            }
                            _ => return Err("a scan without the tables it needs".into()),
                        }
                    }
                }
            }
        }
        self.pos = bits.finish()?;
        Ok(())
    }

    fn check_complete(&self) -> Result<(), WalkError> {
        let frame = self
            .frame
            .as_ref()
            .ok_or("no frame before the end-of-image marker")?;
        for c in &frame.components {
            if c.precision_sent.iter().any(|p| *p != Some(0)) {
                return Err(format!(
                    "component {} is incomplete: not all of its coefficients were sent",
                    c.id
                ));
            }
        }
        Ok(())
    }
}

/// One block's run-length coded AC coefficients in a sequential scan (after its DC).
fn sequential_block(bits: &mut Bits, ac: &Huffman, max_size: u8) -> Result<(), WalkError> {
    let mut k = 1;
    while k < 64 {
        let rs = bits.decode(ac)?;
        let (r, s) = (usize::from(rs >> 4), rs & 15);
        if s == 0 {
            if r != 15 {
                return Ok(());
            }
            k += 16;
            if k > 64 {
                return Err("a run of zero coefficients past the end of a block".into());
            }
            continue;
        }
        k += r;
        if k > 63 {
            return Err("a coefficient past the end of a block".into());
        }
        if s > max_size {
            return Err("an AC coefficient too large for the sample precision".into());
        }
        bits.receive(s)?;
        k += 1;
    }
    Ok(())
}

/// How a scan codes one component's DC values, and the range they must stay in.
struct Dc<'t> {
    table: &'t Huffman,
    /// The quantisation step of the DC coefficient.
    step: i32,
    /// Successive approximation: the value sent is the DC value shifted right by this.
    shift: u8,
    max_size: u8,
    /// Largest magnitude of a dequantised DC value (plus a step for rounding).
    limit: i32,
}

impl Dc<'_> {
    /// A block's DC difference (its size category, then that many bits), added to the
    /// prediction, whose dequantised value must be one that samples can produce.
    fn block(&self, bits: &mut Bits, pred: &mut i32) -> Result<(), WalkError> {
        let t = bits.decode(self.table)?;
        if t > self.max_size {
            return Err("a DC difference too large for the sample precision".into());
        }
        let v = bits.receive(t)? as i32;
        let diff = if t > 0 && v < 1 << (t - 1) {
            v - (1 << t) + 1
        } else {
            v
        };
        *pred += diff;
        let value = i64::from(*pred) * i64::from(self.step) << self.shift;
        if value.abs() > i64::from(self.limit + self.step) {
            return Err("a DC value no image can have".into());
        }
        Ok(())
    }
}

/// One block of a progressive AC scan's first pass (G.1.2.2).
#[allow(clippy::too_many_arguments)]
fn ac_first(
    bits: &mut Bits,
    ac: &Huffman,
    max_size: u8,
    ss: usize,
    se: usize,
    eob_run: &mut u32,
    nonzero: &mut u64,
) -> Result<(), WalkError> {
    if *eob_run > 0 {
        *eob_run -= 1;
        return Ok(());
    }
    let mut k = ss;
    while k <= se {
        let rs = bits.decode(ac)?;
        let (r, s) = (usize::from(rs >> 4), rs & 15);
        if s == 0 {
            if r == 15 {
                k += 16;
                if k > se + 1 {
                    return Err("a run of zero coefficients past the scan's band".into());
                }
                continue;
            }
            *eob_run = (1u32 << r) + bits.receive(r as u8)? - 1;
            return Ok(());
        }
        k += r;
        if k > se {
            return Err("a coefficient past the scan's band".into());
        }
        if s > max_size {
            return Err("an AC coefficient too large for the sample precision".into());
        }
        bits.receive(s)?;
        *nonzero |= 1 << k;
        k += 1;
    }
    Ok(())
}

/// One block of a progressive AC refinement pass (G.1.2.3, as libjpeg's decode_mcu_AC_refine).
fn ac_refine(
    bits: &mut Bits,
    ac: &Huffman,
    ss: usize,
    se: usize,
    eob_run: &mut u32,
    nonzero: &mut u64,
) -> Result<(), WalkError> {
    let mut k = ss;
    if *eob_run == 0 {
        while k <= se {
            let rs = bits.decode(ac)?;
            let (mut r, s) = (i32::from(rs >> 4), rs & 15);
            if s != 0 {
                if s != 1 {
                    return Err("a refinement coefficient larger than one bit".into());
                }
                bits.receive(1)?;
            } else if r != 15 {
                *eob_run = (1u32 << r) + bits.receive(r as u8)?;
                break;
            }
            // Skip r zero coefficients, sending a correction bit for each non-zero one.
            while k <= se {
                if *nonzero & (1 << k) != 0 {
                    bits.receive(1)?;
                } else {
                    if r == 0 {
                        break;
                    }
                    r -= 1;
                }
                k += 1;
            }
            if s != 0 {
                if k > se {
                    return Err("a new coefficient past the scan's band".into());
                }
                *nonzero |= 1 << k;
            }
            k += 1;
        }
    }
    if *eob_run > 0 {
        for j in k..=se {
            if *nonzero & (1 << j) != 0 {
                bits.receive(1)?;
            }
        }
        *eob_run -= 1;
    }
    Ok(())
}

/// Reads entropy-coded bits, one byte at a time, so that any marker met while bits are still
/// needed is an error: a scan's data must hold exactly its blocks.
struct Bits<'a> {
    bytes: &'a [u8],
    pos: usize,
    byte: u32,
    left: u8,
}

impl<'a> Bits<'a> {
    fn new(bytes: &'a [u8], pos: usize) -> Self {
        Self {
            bytes,
            pos,
            byte: 0,
            left: 0,
        }
    }

    fn bit(&mut self) -> Result<u32, WalkError> {
        if self.left == 0 {
            let b = *self
                .bytes
                .get(self.pos)
                .ok_or("the data ends inside a scan")?;
            if b == 0xFF {
                match self.bytes.get(self.pos + 1) {
                    Some(0x00) => self.pos += 1,
                    Some(&m) => {
                        return Err(format!(
                            "marker FF{m:02X} inside a scan's data before its last block"
                        ));
                    }
                    None => return Err("the data ends inside a scan".into()),
                }
            }
            self.pos += 1;
            self.byte = u32::from(b);
            self.left = 8;
        }
        self.left -= 1;
        Ok((self.byte >> self.left) & 1)
    }

    /// `n` raw bits (0..=16) as an unsigned number.
    fn receive(&mut self, n: u8) -> Result<u32, WalkError> {
        let mut v = 0;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Ok(v)
    }

    fn decode(&mut self, table: &Huffman) -> Result<u8, WalkError> {
        let mut code = 0i32;
        for len in 1..=16 {
            code = (code << 1) | self.bit()? as i32;
            if code <= table.max_code[len] {
                return table
                    .values
                    .get((table.offset[len] + code) as usize)
                    .copied()
                    .ok_or_else(|| "a Huffman code without a value".into());
            }
        }
        Err("an invalid Huffman code".into())
    }

    /// Expects restart marker RSTn at the next byte boundary.
    fn restart(&mut self, n: u8) -> Result<(), WalkError> {
        self.left = 0;
        match self.bytes.get(self.pos..self.pos + 2) {
            Some(&[0xFF, m]) if m == 0xD0 + n => {
                self.pos += 2;
                Ok(())
            }
            Some(&[0xFF, m]) => Err(format!("marker FF{m:02X} where RST{n} should be")),
            _ => Err(format!("data where restart marker RST{n} should be")),
        }
    }

    /// The position after the scan's last byte; the next thing there must be a marker.
    fn finish(self) -> Result<usize, WalkError> {
        match self.bytes.get(self.pos..self.pos + 2) {
            Some(&[0xFF, m]) if m != 0x00 => Ok(self.pos),
            Some(_) => Err("data left over after a scan's last block".into()),
            None => Err("the data ends after a scan without an end-of-image marker".into()),
        }
    }
}
