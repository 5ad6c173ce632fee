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

mod blocks;
mod headers;
mod huffman;
mod scan;

use huffman::Huffman;

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
