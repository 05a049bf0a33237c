"""The benchmark's multilingual corpus: synthetic texts in 13 scripts, the same for every run.

Words are built per script from syllables and drawn with a Zipf law. With the benchmark's tokenizer
(Unigram, 8000 pieces, trained on :meth:`CorpusGenerator.training_sentences`) the per-language
characters per token come out close to XLM-R's on real text (English ~3.8, German ~3, Chinese ~1.7,
Korean ~1.6), about 2.3 on the mix. Pure Python: no model, no file.
"""

from __future__ import annotations

import itertools
import random

LANGS = {
    "en": dict(cons="b c d f g h j k l m n p r s t v w y th sh ch st tr pl".split(),
               vows="a e i o u ea ou ai".split(), sep=" ", case=True, end=[". "] * 8 + ["? ", "! "]),
    "de": dict(cons="b d f g h k l m n p r s t w z sch ch st sp pf".split(),
               vows="a e i o u ä ö ü ei au ie".split(), sep=" ", case=True, end=[". "] * 8 + ["? ", "! "]),
    "fr": dict(cons="b c d f g j l m n p r s t v qu ch gn".split(),
               vows="a e i o u é è ê ou ai eau".split(), sep=" ", case=True, end=[". "] * 8 + [" ? ", " ! "]),
    "es": dict(cons="b c d f g j l m n ñ p r s t v ll rr".split(),
               vows="a e i o u á é í ó ú".split(), sep=" ", case=True, end=[". "] * 8 + ["? ", "! "]),
    "ru": dict(cons="б в г д ж з к л м н п р с т ф х ц ч ш щ".split(),
               vows="а е и о у ы э ю я ё".split(), sep=" ", case=True, end=[". "] * 8 + ["? ", "! "]),
    "el": dict(cons="β γ δ ζ θ κ λ μ ν ξ π ρ σ τ φ χ ψ".split(),
               vows="α ε η ι ο υ ω ά έ ί ό".split(), sep=" ", case=True, end=[". "] * 8 + ["; "]),
    "ar": dict(cons="ب ت ث ج ح خ د ذ ر ز س ش ص ض ط ظ ع غ ف ق ك ل م ن ه".split(),
               vows="ا و ي ة".split(), sep=" ", case=False, end=[". "] * 8 + ["؟ "]),
    "he": dict(cons="ב ג ד ה ז ח ט כ ל מ נ ס ע פ צ ק ר ש ת".split(),
               vows="א ו י".split(), sep=" ", case=False, end=[". "] * 8 + ["? "]),
    "hi": dict(cons="क ख ग घ च ज ट ड त द न प ब म य र ल व स ह".split(),
               vows="ा ि ी ु ू े ै ो ौ ं".split(), sep=" ", case=False, end=["। "] * 8 + ["? "]),
    "th": dict(cons="ก ข ค ง จ ช ด ต ท น บ ป พ ม ย ร ล ว ส ห อ".split(),
               vows="ะ า ิ ี ึ ื ุ ู เ แ".split(), sep="", case=False, end=[" "]),
    "ko": dict(hangul=800, sep=" ", case=False, end=[". "] * 8 + ["? "]),
    "zh": dict(cjk=1500, sep="", case=False, end=["。"] * 8 + ["？", "！"]),
    "ja": dict(cjk=800, kana=True, sep="", case=False, end=["。"] * 9 + ["？"]),
}
WEIGHTS = {"en": 2, "de": 1, "fr": 1, "es": 1, "ru": 2, "zh": 4, "ja": 3, "ko": 2, "ar": 1, "hi": 1, "el": 1,
           "he": 1, "th": 1}


class CorpusGenerator:
    def __init__(self, seed: int = 1234, lexicon: int = 20000):
        rng = random.Random(seed)
        self.lexicon = {}
        for name, spec in LANGS.items():
            words = set()
            while len(words) < lexicon:
                words.add(self._word(rng, spec))
            ordered = sorted(words)
            rng.shuffle(ordered)
            self.lexicon[name] = ordered
        self.cum = list(itertools.accumulate(1.0 / (r + 1) ** 1.05 for r in range(lexicon)))

    @staticmethod
    def _word(rng, spec) -> str:
        if "cjk" in spec:
            n = rng.choice([1, 2, 2, 2, 3, 4])
            return "".join(
                chr(rng.randint(0x3041, 0x3096)) if spec.get("kana") and rng.random() > 0.45
                else chr(0x4E00 + rng.randrange(spec["cjk"]))
                for _ in range(n))
        if "hangul" in spec:
            n = rng.choice([1, 2, 2, 3, 3, 4])
            return "".join(chr(0xAC00 + rng.randrange(spec["hangul"]) * 13) for _ in range(n))
        n = rng.choice([1, 1, 2, 2, 2, 3, 3, 4])
        cons, vows = spec["cons"], spec["vows"]
        word = "".join((rng.choice(cons) if rng.random() < 0.6 else rng.choice(cons) + rng.choice(cons))
                       + rng.choice(vows) for _ in range(n))
        return word + rng.choice(cons) if rng.random() < 0.3 else word

    def sentence(self, rng, lang: str) -> str:
        spec = LANGS[lang]
        n = rng.randint(4, 16) if spec["sep"] else rng.randint(6, 22)
        words = rng.choices(self.lexicon[lang], cum_weights=self.cum, k=n)
        if rng.random() < 0.15:
            number = rng.randint(1, 2030) if rng.random() < 0.5 else round(rng.random() * 100, 1)
            words.insert(rng.randrange(len(words)), str(number))
        if spec["sep"] and rng.random() < 0.3:
            i = rng.randrange(1, len(words))
            words[i - 1] += ","
        text = spec["sep"].join(words)
        if spec["case"]:
            text = text[0].upper() + text[1:]
        return text + rng.choice(spec["end"])

    def random_language(self, rng) -> str:
        return rng.choices(list(WEIGHTS), list(WEIGHTS.values()))[0]

    def texts(self, n: int, seed: int = 0, chars: int = 300) -> list[str]:
        """``n`` texts of about ``chars`` characters (+-15%), mostly one language each."""
        rng = random.Random(seed)
        out = []
        for _ in range(n):
            lang = self.random_language(rng)
            target = rng.randint(int(chars * 0.85), int(chars * 1.15))
            text = ""
            while True:
                piece = self.sentence(rng, lang if rng.random() < 0.9 else self.random_language(rng))
                if rng.random() < 0.08:
                    piece = piece.rstrip(" ") + "\n"
                if text and len(text) + len(piece) > target:
                    break
                text += piece
            out.append(text.rstrip())
        return out

    def training_sentences(self, n: int, seed: int = 99) -> list[str]:
        rng = random.Random(seed)
        return [self.sentence(rng, self.random_language(rng)) for _ in range(n)]
