//! Deterministic sample data: [`write_patronymes`] streams a `patronyme,count` CSV of realistic
//! French surnames, the input of `bench/batch` (`tessera sample patronymes`). Same `(rows, seed)`
//! → same bytes, on every platform: the PRNG is xoshiro256** seeded by splitmix64, and the only
//! floating-point work uses IEEE basic operations (no libm `pow`/`exp`/`ln`, whose last bit
//! varies between platforms).
//!
//! Format contract (see `bench/batch/README.md`):
//! - UTF-8 without BOM, NFC (precomposed accents: `é` is one code point; the name lists below are
//!   written precomposed and a test checks that no combining mark appears), `\n` line endings,
//!   header `patronyme,count`, a `\n` after the last row, never a newline inside a field.
//! - RFC 4180 minimal quoting: a field is quoted iff it contains `,`, `"`, `\r` or `\n`, and an
//!   inner `"` is doubled. Only `patronyme` is ever quoted; `count` is a plain integer.
//! - Mix (per row, drawn independently): 70 % single surnames (many accented), 9 % hyphenated
//!   compounds (`Dupont-Moretti`), 9 % particles (`de`, `du`, `de la`, `des`, `Le`, `La`,
//!   `Saint-`, `d'`…), 5 % apostrophes (`D'Artagnan`, `L'Hôte`, `De l'Arcy`), ~6.95 %
//!   syllable-built rare names, 1/2000 quoted `"X, dit Y"` aliases, 1/50000 names with an
//!   embedded escaped quote (`"Durand ""Le Roux"""`). Names are drawn Zipf-like (s = 1.05)
//!   from the lists, most common first.
//! - `count`: long tail, Pareto(α = 1.16) × 3000 / (popularity rank + 8), truncated and clamped
//!   to 1..=250000.
//!
//! It is a port of the former `bench/batch/gen_patronymes.py` (same lists, mix and
//! distributions, not the same bytes). Output goes through one 64 KiB buffer, with no allocation
//! per row.

use std::io::{self, Write};

/// What [`write_patronymes`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SampleStats {
    /// Data rows (the header is not counted).
    pub rows: u64,
    /// Bytes written, header included.
    pub bytes: u64,
    /// Rows whose `patronyme` is quoted (it contains `,` or `"`).
    pub quoted: u64,
}

/// The header line of [`write_patronymes`].
pub const PATRONYMES_HEADER: &str = "patronyme,count\n";

/// Largest `count`.
pub const MAX_COUNT: u64 = 250_000;

/// Writes a "patronyme,count" CSV of `rows` realistic French surnames; same (rows, seed) → same
/// bytes. `out` receives writes of about 64 KiB (no need for a `BufWriter`) and is flushed at the
/// end.
pub fn write_patronymes<W: Write>(mut out: W, rows: u64, seed: u64) -> io::Result<SampleStats> {
    let mut generator = Generator::new(seed);
    let mut buf: Vec<u8> = Vec::with_capacity(BUF + 1024);
    let mut scratch: Vec<u8> = Vec::with_capacity(128);
    let mut stats = SampleStats {
        rows,
        ..SampleStats::default()
    };
    buf.extend_from_slice(PATRONYMES_HEADER.as_bytes());
    for _ in 0..rows {
        let start = buf.len();
        let rank = generator.name(&mut buf);
        stats.quoted += u64::from(quote_field(&mut buf, start, &mut scratch));
        buf.push(b',');
        push_u64(&mut buf, generator.count(rank));
        buf.push(b'\n');
        if buf.len() >= BUF {
            out.write_all(&buf)?;
            stats.bytes += buf.len() as u64;
            buf.clear();
        }
    }
    out.write_all(&buf)?;
    stats.bytes += buf.len() as u64;
    out.flush()?;
    Ok(stats)
}

/// Output buffer size.
const BUF: usize = 64 * 1024;

/// RFC 4180 minimal quoting of the field `buf[start..]`, in place; returns whether it was quoted.
fn quote_field(buf: &mut Vec<u8>, start: usize, scratch: &mut Vec<u8>) -> bool {
    let field = &buf[start..];
    if !field
        .iter()
        .any(|&b| matches!(b, b',' | b'"' | b'\r' | b'\n'))
    {
        return false;
    }
    scratch.clear();
    scratch.extend_from_slice(field);
    buf.truncate(start);
    buf.push(b'"');
    for part in scratch.split_inclusive(|&b| b == b'"') {
        buf.extend_from_slice(part);
        if part.last() == Some(&b'"') {
            buf.push(b'"');
        }
    }
    buf.push(b'"');
    true
}

/// Appends the decimal digits of `n`.
fn push_u64(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

/// Kinds of names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Single,
    Hyphen,
    Particle,
    Apostrophe,
    Syllable,
    Alias,
    Quote,
}

/// Cumulative weights of the kinds out of 1,000,000 (alias = 1/2000, quote = 1/50000).
const KINDS: [(u32, Kind); 7] = [
    (700_000, Kind::Single),
    (790_000, Kind::Hyphen),
    (880_000, Kind::Particle),
    (930_000, Kind::Apostrophe),
    (999_480, Kind::Syllable),
    (999_980, Kind::Alias),
    (1_000_000, Kind::Quote),
];

/// Popularity rank given to the rare names (syllables, aliases, quotes).
const RARE_RANK: u64 = 1500;

struct Generator {
    rng: Rng,
    base: Zipf,
    vowel: Zipf,
}

impl Generator {
    fn new(seed: u64) -> Self {
        Generator {
            rng: Rng::new(seed),
            base: Zipf::new(BASE.len()),
            vowel: Zipf::new(VOWEL.len()),
        }
    }

    fn pick<'a>(&mut self, list: &[&'a str]) -> &'a str {
        list[self.rng.below(list.len())]
    }

    /// Appends one raw (not yet quoted) name to `name`; returns its popularity rank.
    fn name(&mut self, name: &mut Vec<u8>) -> u64 {
        let draw = self.rng.below(1_000_000) as u32;
        let kind = KINDS
            .iter()
            .find(|(cum, _)| draw < *cum)
            .map_or(Kind::Quote, |&(_, k)| k);
        match kind {
            Kind::Single => {
                let a = self.base.sample(&mut self.rng);
                name.extend_from_slice(BASE[a].as_bytes());
                a as u64
            }
            Kind::Hyphen => {
                let a = self.base.sample(&mut self.rng);
                let mut b = self.base.sample(&mut self.rng);
                if b == a {
                    b = (a + 1) % BASE.len();
                }
                for part in [BASE[a], "-", BASE[b]] {
                    name.extend_from_slice(part.as_bytes());
                }
                (a + b + 50) as u64
            }
            Kind::Particle => {
                let a = self.base.sample(&mut self.rng);
                let particle = self.pick(&PARTICLES);
                name.extend_from_slice(particle.as_bytes());
                if particle == "d'" {
                    let v = self.vowel.sample(&mut self.rng);
                    name.extend_from_slice(VOWEL[v].as_bytes());
                } else {
                    if !particle.ends_with('-') {
                        name.push(b' ');
                    }
                    name.extend_from_slice(BASE[a].as_bytes());
                }
                (a + 30) as u64
            }
            Kind::Apostrophe => {
                let v = self.vowel.sample(&mut self.rng);
                let article = self.pick(&APOS);
                for part in [article, VOWEL[v]] {
                    name.extend_from_slice(part.as_bytes());
                }
                (v + 20) as u64
            }
            Kind::Syllable => {
                for part in [self.pick(&SYL1), self.pick(&SYL2)] {
                    name.extend_from_slice(part.as_bytes());
                }
                if self.rng.unit() < 0.4 {
                    let part = self.pick(&SYL2);
                    name.extend_from_slice(part.as_bytes());
                }
                RARE_RANK
            }
            Kind::Alias => {
                let a = self.base.sample(&mut self.rng);
                let nick = self.pick(&NICK);
                for part in [BASE[a], ", dit ", nick] {
                    name.extend_from_slice(part.as_bytes());
                }
                RARE_RANK
            }
            Kind::Quote => {
                let a = self.base.sample(&mut self.rng);
                let nick = self.pick(&NICK);
                let parts = if self.rng.unit() < 0.5 {
                    [BASE[a], " \"", nick, "\""]
                } else {
                    ["\"", nick, "\", ", BASE[a]]
                };
                for part in parts {
                    name.extend_from_slice(part.as_bytes());
                }
                RARE_RANK
            }
        }
    }

    /// Long-tail count: Pareto(α = 1.16) × 3000 / (rank + 8), truncated, clamped to 1..=MAX_COUNT.
    fn count(&mut self, rank: u64) -> u64 {
        let u = 1.0 - self.rng.unit(); // (0, 1]
        let pareto = det::exp(-det::ln(u) * (1.0 / 1.16));
        let c = (pareto * 3000.0 / (rank as f64 + 8.0)) as u64; // `as` truncates and saturates
        c.clamp(1, MAX_COUNT)
    }
}

/// xoshiro256** (Blackman & Vigna), seeded with splitmix64: small, fast, the same sequence on
/// every platform.
struct Rng {
    s: [u64; 4],
}

impl Rng {
    fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut splitmix = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng {
            s: [splitmix(), splitmix(), splitmix(), splitmix()],
        }
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `0..n` (`n` < 2^32; multiply-shift, bias below 2^-12 for our `n`s).
    fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    /// Uniform in [0, 1), 53 bits.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Zipf-like choice of an index in `0..n`, weight 1/(k+1)^1.05, through cumulative weights and a
/// guide table (expected O(1) per draw).
struct Zipf {
    cum: Vec<f64>,
    /// `guide[j]`: first index whose cumulative weight exceeds `j / GUIDE × total`.
    guide: Vec<u16>,
}

const GUIDE: usize = 1024;

impl Zipf {
    fn new(n: usize) -> Self {
        let mut acc = 0.0;
        let cum: Vec<f64> = (1..=n)
            .map(|k| {
                acc += det::exp(-1.05 * det::ln(k as f64));
                acc
            })
            .collect();
        let total = acc;
        let guide = (0..GUIDE)
            .map(|j| {
                let x = j as f64 / GUIDE as f64 * total;
                cum.partition_point(|&c| c <= x).min(n - 1) as u16
            })
            .collect();
        Zipf { cum, guide }
    }

    fn sample(&self, rng: &mut Rng) -> usize {
        let n = self.cum.len();
        let u = rng.unit();
        let x = u * self.cum[n - 1];
        // u ≥ j / GUIDE, so x ≥ the guide's threshold (rounding is monotonic) and the answer is at
        // or after guide[j].
        let mut i = usize::from(self.guide[(u * GUIDE as f64) as usize]);
        while i < n - 1 && self.cum[i] <= x {
            i += 1;
        }
        i
    }
}

/// `ln` and `exp` from IEEE basic operations only (correctly rounded on every platform, and Rust
/// never fuses them into FMAs), so the output does not depend on the platform's libm. Table-driven
/// (tables computed by the compiler with long series), accurate to a few ulps.
mod det {
    /// ln 2 split so that `k × LN2_HI` is exact for |k| < 2²⁰ (fdlibm's values).
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;

    /// `e^r` by its Taylor series, `terms` terms after the 1 (compile-time tables only).
    const fn exp_series(r: f64, terms: u32) -> f64 {
        let mut sum = 1.0;
        let mut n = terms;
        while n >= 1 {
            sum = 1.0 + sum * r / n as f64;
            n -= 1;
        }
        sum
    }

    /// `ln x = 2 atanh((x − 1)/(x + 1))` by its series (compile-time tables only, x in [½, 2]).
    const fn ln_series(x: f64) -> f64 {
        let s = (x - 1.0) / (x + 1.0);
        let s2 = s * s;
        let mut poly = 0.0;
        let mut k = 40;
        while k >= 0 {
            poly = poly * s2 + 1.0 / (2 * k + 1) as f64;
            k -= 1;
        }
        2.0 * s * poly
    }

    /// `EXP2[j] = 2^(j/32)`.
    const EXP2: [f64; 32] = {
        let mut t = [0.0; 32];
        let mut j = 0;
        while j < 32 {
            t[j] = exp_series(j as f64 * std::f64::consts::LN_2 / 32.0, 30);
            j += 1;
        }
        t
    };

    /// For the mantissa's top 7 bits `j`: `INV[j] ≈ 1 / (1 + (j + ½)/128)` and
    /// `LN_INV[j] = ln INV[j]` (of the rounded value actually used).
    const INV: [f64; 128] = {
        let mut t = [0.0; 128];
        let mut j = 0;
        while j < 128 {
            t[j] = 1.0 / (1.0 + (j as f64 + 0.5) / 128.0);
            j += 1;
        }
        t
    };
    const LN_INV: [f64; 128] = {
        let mut t = [0.0; 128];
        let mut j = 0;
        while j < 128 {
            t[j] = ln_series(INV[j]);
            j += 1;
        }
        t
    };

    /// Natural logarithm of a positive, finite, normal `x`.
    pub(super) fn ln(x: f64) -> f64 {
        let bits = x.to_bits();
        let e = ((bits >> 52) & 0x7ff) as i64 - 1023;
        let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000); // [1, 2)
        let j = ((bits >> 45) & 0x7f) as usize;
        // ln x = e ln 2 + ln(m × INV[j]) − ln INV[j], with |m × INV[j] − 1| ≤ 1/256.
        let r = m * INV[j] - 1.0;
        let p =
            r * (1.0 + r * (-0.5 + r * (1.0 / 3.0 + r * (-0.25 + r * (0.2 + r * (-1.0 / 6.0))))));
        let e = e as f64;
        e * LN2_HI + ((e * LN2_LO - LN_INV[j]) + p)
    }

    /// `e^x` for |x| < 700.
    pub(super) fn exp(x: f64) -> f64 {
        // x = k ln2/32 + r, |r| ≤ ln2/64 ≈ 0.011: six terms of the series are exact to 2⁻⁵³.
        // Round to nearest by a truncating cast (an instruction, where `round` is a libm call).
        let y = x * (32.0 * std::f64::consts::LOG2_E);
        let k = (y + if y < 0.0 { -0.5 } else { 0.5 }) as i64 as f64;
        let r = (x - k * (LN2_HI / 32.0)) - k * (LN2_LO / 32.0);
        let p = 1.0
            + r * (1.0
                + r * (0.5
                    + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
        let k = k as i64;
        let scale = f64::from_bits((((k >> 5) + 1023) as u64) << 52);
        EXP2[(k & 31) as usize] * p * scale
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn close_to_std() {
            for i in 1..200_000u32 {
                let x = f64::from(i) / 1000.0;
                for x in [x, 1.0 / x, x * 1e-12, x * 1e9, 1.0 - x * 1e-6] {
                    if x <= 0.0 {
                        continue;
                    }
                    let (ours, std) = (super::ln(x), x.ln());
                    let tolerance = 4.0 * f64::EPSILON * std.abs().max(1.0);
                    assert!((ours - std).abs() <= tolerance, "ln {x}: {ours} {std}");
                }
                let y = f64::from(i) / 4000.0 - 10.0;
                let (ours, std) = (super::exp(y), y.exp());
                assert!(
                    (ours - std).abs() <= 4.0 * f64::EPSILON * std,
                    "exp {y}: {ours} {std}"
                );
            }
        }
    }
}

/// Common French surnames, roughly by frequency (most common first), accents where real.
const BASE: [&str; 356] = [
    "Martin",
    "Bernard",
    "Thomas",
    "Petit",
    "Robert",
    "Richard",
    "Durand",
    "Dubois",
    "Moreau",
    "Laurent",
    "Simon",
    "Michel",
    "Lefèvre",
    "Leroy",
    "Roux",
    "David",
    "Bertrand",
    "Morel",
    "Fournier",
    "Girard",
    "Bonnet",
    "Dupont",
    "Lambert",
    "Fontaine",
    "Rousseau",
    "Vincent",
    "Muller",
    "Lefèbvre",
    "Faure",
    "André",
    "Mercier",
    "Blanc",
    "Guérin",
    "Boyer",
    "Garnier",
    "Chevalier",
    "François",
    "Legrand",
    "Gauthier",
    "Garcia",
    "Perrin",
    "Robin",
    "Clément",
    "Morin",
    "Nicolas",
    "Henry",
    "Roussel",
    "Mathieu",
    "Gautier",
    "Masson",
    "Marchand",
    "Duval",
    "Denis",
    "Dumont",
    "Marie",
    "Lemaire",
    "Noël",
    "Meyer",
    "Dufour",
    "Meunier",
    "Brun",
    "Blanchard",
    "Giraud",
    "Joly",
    "Rivière",
    "Lucas",
    "Brunet",
    "Gaillard",
    "Barbier",
    "Arnaud",
    "Martinez",
    "Gérard",
    "Roche",
    "Renard",
    "Schmitt",
    "Roy",
    "Leroux",
    "Colin",
    "Vidal",
    "Caron",
    "Picard",
    "Roger",
    "Fabre",
    "Aubert",
    "Lemoine",
    "Renaud",
    "Dumas",
    "Lacroix",
    "Olivier",
    "Philippe",
    "Bourgeois",
    "Pierre",
    "Benoît",
    "Rey",
    "Leclerc",
    "Payet",
    "Rolland",
    "Leclercq",
    "Guillaume",
    "Lecomte",
    "López",
    "Jean",
    "Dupuy",
    "Guillot",
    "Hubert",
    "Berger",
    "Carpentier",
    "Sánchez",
    "Dupuis",
    "Moulin",
    "Louis",
    "Deschamps",
    "Huet",
    "Vasseur",
    "Perez",
    "Boucher",
    "Fleury",
    "Royer",
    "Klein",
    "Jacquet",
    "Adam",
    "Paris",
    "Poirier",
    "Marty",
    "Aubry",
    "Guyot",
    "Carré",
    "Charles",
    "Renault",
    "Charpentier",
    "Ménard",
    "Maillard",
    "Baron",
    "Bertin",
    "Bailly",
    "Hervé",
    "Schneider",
    "Fernandez",
    "Le Gall",
    "Collet",
    "Léger",
    "Bouvier",
    "Julien",
    "Prévost",
    "Millet",
    "Perrot",
    "Daniel",
    "Le Roux",
    "Cousin",
    "Germain",
    "Breton",
    "Besson",
    "Langlois",
    "Rémy",
    "Le Goff",
    "Pelletier",
    "Lévêque",
    "Perrier",
    "Leblanc",
    "Barré",
    "Lebrun",
    "Marchal",
    "Weber",
    "Mallet",
    "Hamon",
    "Boulanger",
    "Jacob",
    "Monnier",
    "Michaud",
    "Rodriguez",
    "Guichard",
    "Gillet",
    "Étienne",
    "Grondin",
    "Poulain",
    "Tessier",
    "Chevallier",
    "Collin",
    "Chauvin",
    "Da Silva",
    "Bouchet",
    "Gay",
    "Lemaître",
    "Bénard",
    "Maréchal",
    "Humbert",
    "Reynaud",
    "Antoine",
    "Hoarau",
    "Perret",
    "Barthélemy",
    "Cordier",
    "Pichon",
    "Lejeune",
    "Gilbert",
    "Lamy",
    "Delaunay",
    "Pasquier",
    "Carlier",
    "Laporte",
    "Gosselin",
    "Lefort",
    "Lebon",
    "Barbe",
    "Bouchard",
    "Héraud",
    "Jourdan",
    "Texier",
    "Lemaitre",
    "Thibault",
    "Bérenger",
    "Chénier",
    "Désiré",
    "Gaëtan",
    "Hélène",
    "Joël",
    "Loïc",
    "Maël",
    "Noëlle",
    "Raphaël",
    "Aimé",
    "Bréchet",
    "Crémieux",
    "Dufrêne",
    "Fénelon",
    "Géraud",
    "Hébert",
    "Lagüe",
    "Ménétrier",
    "Pétain",
    "Quéré",
    "Sénéchal",
    "Théron",
    "Védrine",
    "Zénon",
    "Bâton",
    "Château",
    "Côté",
    "Gâteau",
    "Hôtelier",
    "Mâcon",
    "Pâris",
    "Rôtisseur",
    "Le Nôtre",
    "Dupré de Saint-Maur",
    "Boëlle",
    "Citroën",
    "Loïs",
    "Moïse",
    "Noë",
    "Saïd",
    "Staël",
    "Bruël",
    "Héloïse",
    "Anaïs",
    "Zoë",
    "Gaël",
    "Joëlle",
    "Maïté",
    "Façon",
    "Français",
    "Garçon",
    "Leçon",
    "Maçon",
    "Besançon",
    "Çelik",
    "Ébrard",
    "Éluard",
    "Émery",
    "Épée",
    "Évrard",
    "Èze",
    "Ève",
    "Œillet",
    "Cœur",
    "Bœuf",
    "Lœuvre",
    "Abadie",
    "Achard",
    "Aubin",
    "Audibert",
    "Azéma",
    "Babin",
    "Bazin",
    "Béranger",
    "Bigot",
    "Blondel",
    "Bonnin",
    "Bourdon",
    "Brossard",
    "Cadiou",
    "Camus",
    "Cazenave",
    "Chabert",
    "Chapuis",
    "Chéron",
    "Cochet",
    "Courtois",
    "Couturier",
    "Cros",
    "Delmas",
    "Desbois",
    "Dieudonné",
    "Drouet",
    "Ducros",
    "Dugué",
    "Éloi",
    "Escoffier",
    "Fauré",
    "Ferré",
    "Forestier",
    "Frémont",
    "Gagné",
    "Godard",
    "Goujon",
    "Grégoire",
    "Guéguen",
    "Hamel",
    "Hénaff",
    "Isnard",
    "Jégou",
    "Joubert",
    "Kerbrat",
    "Labbé",
    "Lacoste",
    "Laffitte",
    "Lagarde",
    "Lécuyer",
    "Lemée",
    "Lesage",
    "Loiseau",
    "Maigret",
    "Mérel",
    "Montagné",
    "Navarro",
    "Pagès",
    "Pellé",
    "Pérès",
    "Piquet",
    "Poirot",
    "Quémener",
    "Raynaud",
    "Ribeiro",
    "Rigaud",
    "Roussin",
    "Salaün",
    "Sauvé",
    "Séguin",
    "Tanguy",
    "Thébault",
    "Trémolet",
    "Uzé",
    "Vallée",
    "Vérin",
    "Yvon",
    "Zimmermann",
];

/// Names starting with a vowel or a mute h, for the d'/D'/L' forms.
const VOWEL: [&str; 36] = [
    "Artagnan",
    "Alembert",
    "Arcy",
    "Estaing",
    "Hôte",
    "Herminier",
    "Ormesson",
    "Aubigné",
    "Argenson",
    "Orléans",
    "Harcourt",
    "Hozier",
    "Anglade",
    "Aboville",
    "Ambroise",
    "Estrées",
    "Urfé",
    "Allaire",
    "Enghien",
    "Eon",
    "Hautpoul",
    "Hérouville",
    "Isoard",
    "Olonne",
    "Épinay",
    "Éon",
    "Aumale",
    "Ailly",
    "Yèvre",
    "Ortoli",
    "Abbadie",
    "Aguesseau",
    "Alençon",
    "Amboise",
    "Isigny",
    "Œuf",
];

/// Particles: a trailing `-` or `'` glues the name on, anything else takes a space.
const PARTICLES: [&str; 15] = [
    "de",
    "du",
    "des",
    "de la",
    "De",
    "Du",
    "Le",
    "La",
    "Saint-",
    "Sainte-",
    "Van",
    "de Saint-",
    "Le Du",
    "d'",
    "Des",
];

/// Elided articles for the apostrophe names.
const APOS: [&str; 5] = ["D'", "L'", "d'", "l'", "De l'"];

/// First syllables of the rare, syllable-built names.
const SYL1: [&str; 24] = [
    "Ber", "Cha", "Del", "Gré", "Mor", "Lau", "Ker", "Pé", "Tré", "Vau", "Bou", "Ro", "Fon", "Mé",
    "Cas", "Jou", "Sé", "Lan", "Gui", "Dau", "Ri", "Vil", "Quen", "Hé",
];

/// Following syllables of the rare, syllable-built names.
const SYL2: [&str; 26] = [
    "ret", "lin", "nard", "rier", "vel", "zac", "gnon", "chet", "don", "lière", "rac", "mont",
    "ville", "court", "bœuf", "çon", "guès", "zé", "nec", "ot", "ault", "ès", "rot", "ïs", "thier",
    "biès",
];

/// Nicknames of the `X, dit Y` aliases and of the names with an embedded quote.
const NICK: [&str; 12] = [
    "Le Grand",
    "Le Petit",
    "Le Jeune",
    "L'Aîné",
    "La Forêt",
    "Le Breton",
    "Cadet",
    "Sans-Souci",
    "Belle-Humeur",
    "Le Roux",
    "La Tulipe",
    "Va-de-bon-cœur",
];
