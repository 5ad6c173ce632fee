//! Huffman decoding: a table in the decoding form of the JPEG standard, and the bit reader
//! that decodes entropy-coded data with it, refusing any marker met while bits are still needed.

use super::WalkError;

/// One Huffman table in the decoding form of the JPEG standard (F.2.2.3).
#[derive(Clone)]
pub(super) struct Huffman {
    /// Largest code of each length 1..=16, or -1 when there is none.
    pub(super) max_code: [i32; 17],
    /// Index in `values` of the first code of each length, minus that code.
    pub(super) offset: [i32; 17],
    pub(super) values: Vec<u8>,
}

/// Reads entropy-coded bits, one byte at a time, so that any marker met while bits are still
/// needed is an error: a scan's data must hold exactly its blocks.
pub(super) struct Bits<'a> {
    bytes: &'a [u8],
    pos: usize,
    byte: u32,
    left: u8,
}

impl<'a> Bits<'a> {
    pub(super) fn new(bytes: &'a [u8], pos: usize) -> Self {
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
    pub(super) fn receive(&mut self, n: u8) -> Result<u32, WalkError> {
        let mut v = 0;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Ok(v)
    }

    pub(super) fn decode(&mut self, table: &Huffman) -> Result<u8, WalkError> {
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
    pub(super) fn restart(&mut self, n: u8) -> Result<(), WalkError> {
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
    pub(super) fn finish(self) -> Result<usize, WalkError> {
        match self.bytes.get(self.pos..self.pos + 2) {
            Some(&[0xFF, m]) if m != 0x00 => Ok(self.pos),
            Some(_) => Err("data left over after a scan's last block".into()),
            None => Err("the data ends after a scan without an end-of-image marker".into()),
        }
    }
}
