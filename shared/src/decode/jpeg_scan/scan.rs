//! One scan: its header checked against the frame and the coefficients already sent, then every
//! MCU of the scan walked block by block (with its restart markers) until the scan's last block.

use super::blocks::{Dc, ac_first, ac_refine, sequential_block};
use super::huffman::Bits;
use super::{File, WalkError};

/// One component's part in a scan.
struct ScanComponent {
    index: usize,
    dc: usize,
    ac: usize,
}

impl File<'_> {
    pub(super) fn scan(&mut self, s: &[u8]) -> Result<(), WalkError> {
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
}
