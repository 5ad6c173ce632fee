//! One block's entropy-coded data: a sequential block (DC then run-length coded AC), a DC
//! value checked against what samples can produce, and the two kinds of progressive AC block
//! (first pass and refinement).

use super::WalkError;
use super::huffman::{Bits, Huffman};

/// One block's run-length coded AC coefficients in a sequential scan (after its DC).
pub(super) fn sequential_block(
    bits: &mut Bits,
    ac: &Huffman,
    max_size: u8,
) -> Result<(), WalkError> {
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
pub(super) struct Dc<'t> {
    pub(super) table: &'t Huffman,
    /// The quantisation step of the DC coefficient.
    pub(super) step: i32,
    /// Successive approximation: the value sent is the DC value shifted right by this.
    pub(super) shift: u8,
    pub(super) max_size: u8,
    /// Largest magnitude of a dequantised DC value (plus a step for rounding).
    pub(super) limit: i32,
}

impl Dc<'_> {
    /// A block's DC difference (its size category, then that many bits), added to the
    /// prediction, whose dequantised value must be one that samples can produce.
    pub(super) fn block(&self, bits: &mut Bits, pred: &mut i32) -> Result<(), WalkError> {
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
        let value = (i64::from(*pred) * i64::from(self.step)) << self.shift;
        if value.abs() > i64::from(self.limit + self.step) {
            return Err("a DC value no image can have".into());
        }
        Ok(())
    }
}

/// One block of a progressive AC scan's first pass (G.1.2.2).
#[allow(clippy::too_many_arguments)]
pub(super) fn ac_first(
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
pub(super) fn ac_refine(
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
