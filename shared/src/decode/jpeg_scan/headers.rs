//! The marker segments that come before a scan: the frame header (size, precision, components
//! and their sampling), the quantisation tables (only their DC steps are kept) and the Huffman
//! tables, built into their decoding form.

use super::huffman::Huffman;
use super::{Component, File, Frame, WalkError};

impl File<'_> {
    pub(super) fn frame(&mut self, s: &[u8], progressive: bool) -> Result<(), WalkError> {
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

    pub(super) fn quantisation_tables(&mut self, mut s: &[u8]) -> Result<(), WalkError> {
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

    pub(super) fn huffman_tables(&mut self, mut s: &[u8]) -> Result<(), WalkError> {
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
}
