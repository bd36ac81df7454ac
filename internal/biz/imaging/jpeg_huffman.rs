//! Huffman tables and the bit reader of the DC-only JPEG decoder.

use super::bytes::slice_at;

/// Bits looked up at once; covers nearly every code in camera tables.
const LOOKUP_BITS: u32 = 11;
const LOOKUP_SIZE: usize = 1 << LOOKUP_BITS;

/// Fields of a [`Huffman::skip`] entry, as (shift, width). The bits a step consumes come
/// lowest, so that the shift between two lookups takes them with one mask (which x86's shift
/// does by itself).
const STEP_CONSUME: (u32, u32) = (0, 6);
const SINGLE_CONSUME: (u32, u32) = (6, 6);
const STEP_ADVANCE: (u32, u32) = (12, 7);
const PAIR_FROM: (u32, u32) = (19, 7);

#[inline(always)]
fn field(entry: u32, (shift, width): (u32, u32)) -> u32 {
    (entry >> shift) & ((1 << width) - 1)
}

fn with_field(value: u32, (shift, _): (u32, u32)) -> u32 {
    value << shift
}

/// A Huffman table with a direct lookup for short codes.
pub(super) struct Huffman {
    /// By the next `LOOKUP_BITS` bits: code length | symbol << 4; 0 for longer codes.
    fast: Box<[u16; LOOKUP_SIZE]>,
    /// For AC tables, pre-digested for skipping; 0 for longer codes. Each
    /// entry is one step: the bits it consumes (codes and values) and the
    /// zigzag positions it advances (64 for end of block). A step is two
    /// consecutive codes when both lie within the lookup bits, otherwise
    /// one. A pair is wrong when its first code fills the block (the second
    /// is then the next block's DC): `PAIR_FROM` is the zigzag position from
    /// which that happens (64 for single steps), and `SINGLE_CONSUME` the
    /// first code's bits alone, for that case.
    skip: Box<[u32; LOOKUP_SIZE]>,
    /// Largest code of each length (index 1..=16), -1 when none.
    max_code: [i32; 17],
    /// Symbol index minus code, per length.
    offset: [i32; 17],
    symbols: Vec<u8>,
}

impl Huffman {
    pub(super) fn new(counts: &[u8], symbols: &[u8]) -> Option<Huffman> {
        let mut table = Huffman {
            fast: Box::new([0; LOOKUP_SIZE]),
            skip: Box::new([0; LOOKUP_SIZE]),
            max_code: [-1; 17],
            offset: [0; 17],
            symbols: symbols.to_vec(),
        };
        let mut code = 0u32;
        let mut index = 0usize;
        for (len, &count) in (1u32..=16).zip(counts) {
            let len_index = usize::try_from(len).ok()?;
            table.offset[len_index] = i32::try_from(index).ok()? - i32::try_from(code).ok()?;
            for _ in 0..count {
                if code >= 1 << len {
                    return None;
                }
                let symbol = *symbols.get(index)?;
                if len <= LOOKUP_BITS {
                    let (run, size) = (u16::from(symbol >> 4), u16::from(symbol & 15));
                    let advance = match (run, size) {
                        (15, 0) => 16,
                        (_, 0) => 64,
                        _ => run + 1,
                    };
                    let fast = u16::try_from(len).ok()? | u16::from(symbol) << 4;
                    let skip = with_field(len + u32::from(size), SINGLE_CONSUME)
                        | with_field(len + u32::from(size), STEP_CONSUME)
                        | with_field(u32::from(advance), STEP_ADVANCE)
                        | with_field(64, PAIR_FROM);
                    let shift = LOOKUP_BITS - len;
                    let first = usize::try_from(code << shift).ok()?;
                    let last = usize::try_from((code + 1) << shift).ok()?;
                    table.fast.get_mut(first..last)?.fill(fast);
                    table.skip.get_mut(first..last)?.fill(skip);
                }
                table.max_code[len_index] = i32::try_from(code).ok()?;
                code += 1;
                index += 1;
            }
            code <<= 1;
        }
        // Pairs: a second code that lies wholly in the bits the first leaves.
        let single = table.skip.clone();
        for (index, entry) in table.skip.iter_mut().enumerate() {
            let (consume, advance) = (field(*entry, STEP_CONSUME), field(*entry, STEP_ADVANCE));
            if *entry == 0 || advance == 64 || consume >= LOOKUP_BITS {
                continue;
            }
            let rest = (index << consume) & (LOOKUP_SIZE - 1);
            let second = single[rest];
            let (consume2, advance2) = (field(second, STEP_CONSUME), field(second, STEP_ADVANCE));
            if second != 0 && consume + consume2 <= LOOKUP_BITS {
                *entry = with_field(consume, SINGLE_CONSUME)
                    | with_field(consume + consume2, STEP_CONSUME)
                    | with_field(advance + advance2, STEP_ADVANCE)
                    | with_field(64 - advance, PAIR_FROM);
            }
        }
        Some(table)
    }
}

/// The next `n` bits (1 <= n <= 32) of an MSB-aligned bit buffer.
#[inline(always)]
fn peek_bits(acc: u64, n: u32) -> u32 {
    (acc >> ((64 - n) & 63)) as u32
}

#[inline(always)]
fn lookup_index(acc: u64) -> usize {
    (acc >> (64 - LOOKUP_BITS)) as usize & (LOOKUP_SIZE - 1)
}

/// Symbol and code length for codes longer than the lookup table.
#[cold]
fn slow_symbol(table: &Huffman, acc: u64) -> Option<(u8, u32)> {
    for len in LOOKUP_BITS + 1..=16 {
        let code = i32::try_from(peek_bits(acc, len)).ok()?;
        let len_index = usize::try_from(len).ok()?;
        if code <= *table.max_code.get(len_index)? {
            let index = code + *table.offset.get(len_index)?;
            let symbol = *table.symbols.get(usize::try_from(index).ok()?)?;
            return Some((symbol, len));
        }
    }
    None
}

/// MSB-first bit reader over entropy-coded data, undoing byte stuffing.
/// At a marker it feeds zeros and counts them, as libjpeg does.
///
/// `acc` holds `bits` valid bits at the top and zeros below. The decoding
/// loop copies `acc`, `bits` and `pos` into locals and only passes them by
/// value, so that they stay in registers.
pub(super) struct BitReader<'a> {
    data: &'a [u8],
    acc: u64,
    bits: u32,
    pos: usize,
    at_marker: bool,
    pub(super) padding: u32,
}

impl<'a> BitReader<'a> {
    pub(super) fn new(data: &'a [u8], pos: usize) -> Self {
        BitReader {
            data,
            acc: 0,
            bits: 0,
            pos,
            at_marker: false,
            padding: 0,
        }
    }

    /// Tops the buffer up to at least 56 bits: from the next eight bytes
    /// without a data-dependent branch as long as they hold no 0xFF, else
    /// byte by byte. The bits below `bits` may hold stream bits already:
    /// the next top-up ORs in the same bits there.
    #[inline(always)]
    fn top_up(&mut self, acc: u64, bits: u32, pos: usize) -> (u64, u32, usize) {
        if !self.at_marker
            && let Some(word) = slice_at(self.data, pos, 8).and_then(|w| w.try_into().ok())
        {
            let word = u64::from_be_bytes(word);
            let inverted = !word;
            let has_ff =
                inverted.wrapping_sub(0x0101_0101_0101_0101) & !inverted & 0x8080_8080_8080_8080;
            if has_ff == 0 {
                let take = (63 - bits) >> 3;
                return (acc | word >> bits, bits + take * 8, pos + take as usize);
            }
        }
        if bits < 56 {
            self.fill_bytewise(acc, bits, pos)
        } else {
            (acc, bits, pos)
        }
    }

    #[inline(never)]
    fn fill_bytewise(&mut self, mut acc: u64, mut bits: u32, mut pos: usize) -> (u64, u32, usize) {
        // To 56..=63 bits: a top-up needs one bit free.
        while bits < 56 {
            let byte = if self.at_marker {
                self.padding = self.padding.saturating_add(1);
                0
            } else {
                match self.data.get(pos) {
                    Some(&0xFF) if self.data.get(pos + 1) == Some(&0) => {
                        pos += 2;
                        0xFF
                    }
                    Some(&0xFF) => {
                        self.at_marker = true;
                        0
                    }
                    Some(&b) => {
                        pos += 1;
                        b
                    }
                    None => {
                        self.at_marker = true;
                        0
                    }
                }
            };
            acc |= u64::from(byte) << (56 - bits);
            bits += 8;
        }
        (acc, bits, pos)
    }

    /// Whether bits fed past the end of the data (at the marker that ends
    /// it, or the end of the file) were consumed: the data ran out before
    /// the decoding did. Encoders pad the last byte with ones, so whole data
    /// never needs them.
    pub(super) fn overran(&self) -> bool {
        let fed = u64::from(self.padding) + u64::from(self.at_marker);
        fed * 8 > u64::from(self.bits)
    }

    /// Moves past the restart marker `RSTn`, dropping the padding bits.
    pub(super) fn restart(&mut self, n: u8) -> Option<()> {
        self.at_marker = false;
        self.padding = 0;
        let mut pos = self.pos;
        loop {
            let at = pos + self.data.get(pos..)?.iter().position(|&b| b == 0xFF)?;
            match *self.data.get(at + 1)? {
                0x00 | 0xFF => pos = at + 1,
                m if m == 0xD0 + n => {
                    self.acc = 0;
                    self.bits = 0;
                    self.pos = at + 2;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Decodes the blocks of one MCU, one per `(DC, AC)` table pair, and writes their DC
    /// differences to `diffs`; AC values are skipped. The buffer stays in registers from one
    /// block to the next: only the MCU's end writes it back.
    pub(super) fn dc_of_mcu(
        &mut self,
        tables: &[(&Huffman, Option<&Huffman>)],
        diffs: &mut [i32],
    ) -> Option<()> {
        let mut state = (self.acc, self.bits, self.pos);
        for (&(dc, ac), diff) in tables.iter().zip(diffs.iter_mut()) {
            let (value, next) = self.block(state, dc, ac)?;
            *diff = value;
            state = next;
        }
        (self.acc, self.bits, self.pos) = state;
        Some(())
    }

    /// One block from the buffer state `(acc, bits, pos)`: its DC difference, and the state
    /// after it.
    #[inline(always)]
    fn block(
        &mut self,
        (mut acc, mut bits, mut pos): (u64, u32, usize),
        dc: &Huffman,
        ac: Option<&Huffman>,
    ) -> Option<(i32, (u64, u32, usize))> {
        // Every step below takes at most 31 bits (a code and its value).
        macro_rules! fill {
            () => {
                (acc, bits, pos) = self.top_up(acc, bits, pos);
            };
        }
        macro_rules! consume {
            ($n:expr) => {{
                let n: u32 = $n;
                acc <<= n & 63;
                bits = bits.wrapping_sub(n);
            }};
        }

        fill!();
        let entry = dc.fast[lookup_index(acc)];
        let size = if entry != 0 {
            consume!(u32::from(entry & 15));
            u32::from(entry >> 4)
        } else {
            let (symbol, len) = slow_symbol(dc, acc)?;
            consume!(len);
            u32::from(symbol)
        };
        // The code (at most 16 bits) and its value (at most 11) fit in what the top-up left,
        // and a size of 0 reads no bits and gives 0: no branch on the size.
        if size > 11 {
            return None;
        }
        let v = ((acc >> 1) >> (63 - size)) as i32;
        consume!(size);
        let half = (1 << size) >> 1;
        let diff = if v < half { v - (1 << size) + 1 } else { v };
        let Some(ac) = ac else {
            return Some((diff, (acc, bits, pos)));
        };
        // The table itself, not the path to it: one load per step.
        let skip: &[u32; LOOKUP_SIZE] = &ac.skip;
        // A top-up leaves at least 56 bits and a table step takes at most 26
        // (an 11-bit code and a 15-bit value), so two steps go between
        // top-ups; the longer codes of the slow path top up first.
        let mut k = 1u32;
        'block: loop {
            fill!();
            for _ in 0..2 {
                let entry = skip[lookup_index(acc)];
                if entry == 0 {
                    fill!();
                    let (symbol, len) = slow_symbol(ac, acc)?;
                    consume!(len);
                    let (run, size) = (u32::from(symbol >> 4), u32::from(symbol & 15));
                    match (run, size) {
                        (15, 0) => k += 16,
                        (_, 0) => break 'block,
                        _ => {
                            consume!(size);
                            k += run + 1;
                        }
                    }
                    if k >= 64 {
                        break 'block;
                    }
                    continue 'block;
                }
                // The rare pair whose first code fills the block is a branch, so
                // that the common step goes from one lookup to the next.
                if k >= field(entry, PAIR_FROM) {
                    consume!(field(entry, SINGLE_CONSUME));
                    break 'block;
                }
                let n = field(entry, STEP_CONSUME);
                acc <<= n;
                bits = bits.wrapping_sub(n);
                k += field(entry, STEP_ADVANCE);
                if k >= 64 {
                    break 'block;
                }
            }
        }
        Some((diff, (acc, bits, pos)))
    }
}
