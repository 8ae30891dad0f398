"""Drug names as the last resort of identification: a MAR's free text reduced to its ingredient.

"Vancomycin Hydrochloride 1 g/200 mL IVPB" is vancomycin: strengths, units, dosage forms and
packaging words go first, then salt and ester words.  The formulary compares a name at each
step with its own names and synonyms reduced the same way; an exact name or synonym is a plain
match, a reduced one is flagged on the line (``matched-by-name``).  Salt words go only after a
drug word: in "potassium chloride" or "magnesium sulfate" the salt is the drug; a reduced match
never crosses salts (dexamethasone acetate is not dexamethasone sodium phosphate); a name with a
percentage is never reduced (a solution's concentration is its identity).  A reduced name that fits
two drugs identifies neither (saline by name cannot say which bag size).
"""

from __future__ import annotations

import re

STRENGTH = re.compile(r"^\d+([.,]\d+)?(%|[a-z]+)?$|^%$")
UNITS = frozenset("""
mg mcg ug g gm gram grams kg ml l litre liter meq mmol unit units iu u mcg/ml mg/ml meq/ml mg/kg
cc mls hr h min each ea
""".split())
FORMS = frozenset("""
injection injectable inj solution soln sol infusion inf iv ivpb ivp piggyback premix premixed bag vial vials
syringe prefilled pfs ampule ampoule amp powder lyophilized lyophilised for reconstitution concentrate
conc single dose multi use sdv mdv preservative free pf in of and with per w water sterile diluent
intravenous intramuscular subcutaneous push bolus drip continuous emulsion suspension liquid
""".split())
SALTS = frozenset("""
hydrochloride hcl hydrobromide hbr sodium disodium potassium calcium magnesium sulfate sulphate phosphate
acetate citrate tartrate bitartrate maleate mesylate besylate succinate fumarate lactate gluconate
dihydrate monohydrate trihydrate anhydrous hydrate tromethamine meglumine
""".split())


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:[.,][0-9]+)?%?", text.lower())


def exact(text: str) -> str:
    """The name as a comparable string (case and punctuation ignored)."""
    return " ".join(words(text))


def salts(text: str) -> set[str]:
    return {w for w in words(text) if w in SALTS}


def same_salt(text: str, entry_name: str) -> bool:
    """A reduced match must not cross salts: dexamethasone acetate is not dexamethasone sodium
    phosphate (another HCPCS code).  A name or an entry that names no salt agrees with any."""
    sent, known = salts(text), salts(entry_name)
    return not sent or not known or sent <= known


def reduced(text: str) -> tuple[str, ...]:
    """The name without strengths and forms, then also without salts: each non-empty step once.
    A name with a percentage is not reduced at all: for a solution the concentration is what it
    is (0.9 % or 3 % saline, 5 % or 50 % dextrose)."""
    if any(w.endswith("%") for w in words(text)):
        return ()
    # each word once: "Vancomycin Hydrochloride (VANCOMYCIN HYDROCHLORIDE)" is said twice
    base = list(dict.fromkeys(w for w in words(text) if not STRENGTH.match(w) and w not in UNITS and w not in FORMS))
    # Salts go only after a drug word: in "potassium chloride" or "magnesium sulfate" the salt is the drug.
    bare = [w for w in base if w not in SALTS] if base and base[0] not in SALTS else base
    steps = [" ".join(base), " ".join(bare)]
    return tuple(dict.fromkeys(s for s in steps if s))
