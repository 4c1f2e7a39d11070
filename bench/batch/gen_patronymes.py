#!/usr/bin/env python3
"""Deterministic generator of a "patronyme,count" CSV of realistic French surnames.

    python3 gen_patronymes.py --rows 800000 --seed 42 --out data/patronymes_800k.csv

Format (the input contract of bench/batch, see README.md):
- UTF-8 (no BOM), NFC-normalised (precomposed accents: "é" is one code point), `\n` line endings,
  header `patronyme,count`, a trailing `\n` after the last row.
- RFC 4180 minimal quoting: a field is quoted only when it contains `,` `"` or a newline; an
  embedded `"` is doubled. Only `patronyme` is ever quoted; `count` is a plain positive integer.
- Mix (approximate, per row): ~70 % single surnames (many accented), ~9 % hyphenated compounds
  (Dupont-Moretti), ~9 % particles (de, du, de la, des, Le, La, Saint-, d'), ~5 % apostrophes
  (D'Artagnan, L'Hôte), ~7 % syllable-built rare names, 1/2000 quoted "X, dit Y" aliases with a
  comma, 1/50000 names with an embedded escaped quote ("Le ""Grand"" Martin"). No empty names,
  no newlines inside fields.
- count: long tail, Pareto(alpha=1.16) x 3000/(popularity rank + 8), clamped to 1..250000.

Same --rows/--seed => same bytes (Python's `random.Random` is stable across 3.x versions for
`random()`, `choices()` and `getrandbits()`). Rows are produced in blocks and streamed out, so
memory stays flat for any --rows. With --out, nothing is printed on stdout (a summary goes to
stderr); without --out the CSV goes to stdout.
"""

import argparse
import bisect
import itertools
import random
import sys
import time
import unicodedata

# Common French surnames, roughly by frequency (most common first), with accents where real.
BASE = """
Martin Bernard Thomas Petit Robert Richard Durand Dubois Moreau Laurent Simon Michel Lefèvre
Leroy Roux David Bertrand Morel Fournier Girard Bonnet Dupont Lambert Fontaine Rousseau Vincent
Muller Lefèbvre Faure André Mercier Blanc Guérin Boyer Garnier Chevalier François Legrand Gauthier
Garcia Perrin Robin Clément Morin Nicolas Henry Roussel Mathieu Gautier Masson Marchand Duval
Denis Dumont Marie Lemaire Noël Meyer Dufour Meunier Brun Blanchard Giraud Joly Rivière Lucas
Brunet Gaillard Barbier Arnaud Martinez Gérard Roche Renard Schmitt Roy Leroux Colin Vidal Caron
Picard Roger Fabre Aubert Lemoine Renaud Dumas Lacroix Olivier Philippe Bourgeois Pierre Benoît
Rey Leclerc Payet Rolland Leclercq Guillaume Lecomte López Jean Dupuy Guillot Hubert Berger
Carpentier Sánchez Dupuis Moulin Louis Deschamps Huet Vasseur Perez Boucher Fleury Royer Klein
Jacquet Adam Paris Poirier Marty Aubry Guyot Carré Charles Renault Charpentier Ménard Maillard
Baron Bertin Bailly Hervé Schneider Fernandez Le_Gall Collet Léger Bouvier Julien Prévost Millet
Perrot Daniel Le_Roux Cousin Germain Breton Besson Langlois Rémy Le_Goff Pelletier Lévêque Perrier
Leblanc Barré Lebrun Marchal Weber Mallet Hamon Boulanger Jacob Monnier Michaud Rodriguez Guichard
Gillet Étienne Grondin Poulain Tessier Chevallier Collin Chauvin Da_Silva Bouchet Gay Lemaître
Bénard Maréchal Humbert Reynaud Antoine Hoarau Perret Barthélemy Cordier Pichon Lejeune Gilbert
Lamy Delaunay Pasquier Carlier Laporte Gosselin Lefort Lebon Barbe Bouchard Héraud Jourdan
Texier Lemaitre Thibault Bérenger Chénier Désiré Gaëtan Hélène Joël Loïc Maël Noëlle Raphaël
Aimé Bréchet Crémieux Dufrêne Fénelon Géraud Hébert Lagüe Ménétrier Pétain Quéré Sénéchal Théron
Védrine Zénon Bâton Château Côté Gâteau Hôtelier Mâcon Pâris Rôtisseur Le_Nôtre Dupré_de_Saint-Maur
Boëlle Citroën Loïs Moïse Noë Saïd Staël Bruël Héloïse Anaïs Zoë Gaël Joëlle Maïté
Façon Français Garçon Leçon Maçon Besançon Çelik
Ébrard Éluard Émery Épée Évrard Èze Ève Œillet Cœur Bœuf Lœuvre
Abadie Achard Aubin Audibert Azéma Babin Bazin Béranger Bigot Blondel Bonnin Bourdon Brossard
Cadiou Camus Cazenave Chabert Chapuis Chéron Cochet Courtois Couturier Cros Delmas Desbois
Dieudonné Drouet Ducros Dugué Éloi Escoffier Fauré Ferré Forestier Frémont Gagné Godard Goujon
Grégoire Guéguen Hamel Hénaff Isnard Jégou Joubert Kerbrat Labbé Lacoste Laffitte Lagarde Lécuyer
Lemée Lesage Loiseau Maigret Mérel Montagné Navarro Noël Pagès Pellé Pérès Piquet Poirot Quémener
Raynaud Ribeiro Rigaud Roussin Salaün Sauvé Séguin Tanguy Thébault Trémolet Uzé Vallée Vérin
Yvon Zimmermann
"""

# Names starting with a vowel or mute h, for d'/D'/L' forms.
VOWEL = """
Artagnan Alembert Arcy Estaing Hôte Herminier Ormesson Aubigné Argenson Orléans Harcourt
Hozier Anglade Aboville Ambroise Estrées Urfé Allaire Enghien Eon Hautpoul Hérouville Isoard
Olonne Épinay Éon Aumale Ailly Yèvre Ortoli Abbadie Aguesseau Alençon Amboise Isigny Œuf
"""

PARTICLES = ["de", "du", "des", "de la", "De", "Du", "Le", "La", "Saint-", "Sainte-",
             "Van", "de Saint-", "Le Du", "d'", "Des"]
APOS = ["D'", "L'", "d'", "l'", "De l'"]
# Syllables for rare, synthetic-but-plausible names.
SYL1 = ["Ber", "Cha", "Del", "Gré", "Mor", "Lau", "Ker", "Pé", "Tré", "Vau", "Bou", "Ro",
        "Fon", "Mé", "Cas", "Jou", "Sé", "Lan", "Gui", "Dau", "Ri", "Vil", "Quen", "Hé"]
SYL2 = ["ret", "lin", "nard", "rier", "vel", "zac", "gnon", "chet", "don", "lière", "rac",
        "mont", "ville", "court", "bœuf", "çon", "guès", "zé", "nec", "ot", "ault", "ès",
        "rot", "ïs", "thier", "biès"]
NICK = ["Le Grand", "Le Petit", "Le Jeune", "L'Aîné", "La Forêt", "Le Breton", "Cadet",
        "Sans-Souci", "Belle-Humeur", "Le Roux", "La Tulipe", "Va-de-bon-cœur"]

SINGLE, HYPHEN, PARTICLE, APOSTROPHE, SYLLABLE, ALIAS, QUOTE = range(7)
KINDS = [SINGLE, HYPHEN, PARTICLE, APOSTROPHE, SYLLABLE, ALIAS, QUOTE]
# Cumulative weights out of 1_000_000: ALIAS = 1/2000, QUOTE = 1/50000.
KIND_CUM = [700_000, 790_000, 880_000, 930_000, 999_480, 999_980, 1_000_000]

BLOCK = 20_000


def nfc_list(text):
    out = []
    for w in text.split():
        w = unicodedata.normalize("NFC", w.replace("_", " "))
        if w not in out:
            out.append(w)
    return out


def zipf_cum(n, s=1.05):
    acc, cum = 0.0, []
    for k in range(1, n + 1):
        acc += 1.0 / k ** s
        cum.append(acc)
    return cum


def quote(field):
    """RFC 4180 minimal quoting (what csv.QUOTE_MINIMAL, polars and the csv crate do)."""
    if "," in field or '"' in field or "\n" in field or "\r" in field:
        return '"' + field.replace('"', '""') + '"'
    return field


def rows(n, seed):
    """Yield CSV text blocks (without header) for n rows."""
    rng = random.Random(seed)
    base = nfc_list(BASE)
    vowel = nfc_list(VOWEL)
    base_cum = zipf_cum(len(base))
    vowel_cum = zipf_cum(len(vowel))
    kinds_w = [KIND_CUM[0]] + [b - a for a, b in zip(KIND_CUM, KIND_CUM[1:])]
    choices, rand, pareto = rng.choices, rng.random, rng.paretovariate
    nb, nv = len(base), len(vowel)
    done = 0
    while done < n:
        m = min(BLOCK, n - done)
        kinds = choices(KINDS, cum_weights=KIND_CUM, k=m)
        b1 = choices(range(nb), cum_weights=base_cum, k=m)
        b2 = choices(range(nb), cum_weights=base_cum, k=m)
        out = []
        for i in range(m):
            k = kinds[i]
            a = b1[i]
            if k == SINGLE:
                name = base[a]
                rank = a
            elif k == HYPHEN:
                b = b2[i] if b2[i] != a else (a + 1) % nb
                name = base[a] + "-" + base[b]
                rank = a + b + 50
            elif k == PARTICLE:
                p = PARTICLES[int(rand() * len(PARTICLES))]
                if p == "d'":
                    name = p + vowel[bisect.bisect(vowel_cum, rand() * vowel_cum[-1]) % nv]
                elif p.endswith("-"):
                    name = p + base[a]
                else:
                    name = p + " " + base[a]
                rank = a + 30
            elif k == APOSTROPHE:
                v = bisect.bisect(vowel_cum, rand() * vowel_cum[-1]) % nv
                name = APOS[int(rand() * len(APOS))] + vowel[v]
                rank = v + 20
            elif k == SYLLABLE:
                name = (SYL1[int(rand() * len(SYL1))] + SYL2[int(rand() * len(SYL2))]
                        + (SYL2[int(rand() * len(SYL2))] if rand() < 0.4 else ""))
                rank = 1500
            elif k == ALIAS:
                name = '"' + base[a] + ", dit " + NICK[int(rand() * len(NICK))] + '"'
                rank = 1500
            else:  # QUOTE: embedded escaped quote, always with a comma half the time
                nick = NICK[int(rand() * len(NICK))]
                raw = (base[a] + ' "' + nick + '"') if rand() < 0.5 else \
                      ('"' + nick + '", ' + base[a])
                name = quote(raw)
                rank = 1500
            # Long tail: Pareto draw scaled down with the popularity rank, at least 1.
            c = int(pareto(1.16) * 3000.0 / (rank + 8.0))
            if c < 1:
                c = 1
            elif c > 250_000:
                c = 250_000
            out.append(f"{name},{c}\n")
        done += m
        yield "".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", help="output path (default: stdout)")
    a = ap.parse_args()
    t0 = time.perf_counter()
    f = open(a.out, "w", encoding="utf-8", newline="") if a.out else sys.stdout
    written = 0
    try:
        f.write("patronyme,count\n")
        for block in rows(a.rows, a.seed):
            f.write(block)
            written += len(block)
    finally:
        if a.out:
            f.close()
    if a.out:
        print(f"gen_patronymes: {a.rows} rows (seed {a.seed}) -> {a.out} "
              f"in {time.perf_counter() - t0:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
