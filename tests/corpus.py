"""A small multilingual corpus and the edge cases the integration tests send."""

import random

SENTENCES = [
    "Hello world. This is a test! How are you? I'm fine, thanks.",
    "The quick brown fox jumps over the lazy dog. It was not amused.",
    "Dr. Smith arrived at 5 p.m. on Jan. 3rd; nobody noticed.",
    "Der schnelle braune Fuchs springt über den faulen Hund. Wirklich? Ja!",
    "Le café est très bon. Où est la gare ? Merci beaucoup.",
    "El niño comió una manzana. ¿Dónde está el baño? ¡Qué sorpresa!",
    "Привет мир. Как дела? Всё хорошо, спасибо.",
    "Καλημέρα κόσμε. Τι κάνεις;",
    "这是一个测试。我们在这里。你好吗？",
    "これはテストです。日本語の文章を書きます。",
    "안녕하세요. 만나서 반갑습니다.",
    "مرحبا بالعالم. كيف حالك؟ أنا بخير.",
    "שלום עולם. מה שלומך? הכל טוב.",
    "नमस्ते दुनिया। आप कैसे हैं?",
    "สวัสดีชาวโลก นี่คือการทดสอบ",
    "Emoji 😀 are fun 🎉! Flags 🇩🇪 and families 👨‍👩‍👧 too.",
    "Combining marks: e\u0301, a\u0308, n\u0303. Done.",
    "Tabs\tand\u00a0non-breaking\u2009spaces\u3000everywhere.",
    "no punctuation at all in this one just words and more words",
    "UPPER CASE SHOUTING. lower case whispering.",
]

EDGE_CASES = [
    "",
    " ",
    "   \t  ",
    "\n",
    "\n\n\n",
    "a",
    ".",
    "Line one.\nLine two.\n\nLine four after a blank line.",
    "  leading and trailing spaces.  ",
    "Windows\r\nline endings.\r\n",
    "😀",
    "日本",
    "\u05e9\u05dc\u05d5\u05dd",
    "e\u0301\u0301\u0301",
    "\u200b\u200d zero width",
    "\x00 control \x07 chars",
]


def multilingual_texts(n: int, seed: int = 0, sentences_per_text=(1, 6)) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        k = rng.randint(*sentences_per_text)
        sep = rng.choice([" ", " ", "\n", "  ", "\n\n"])
        texts.append(sep.join(rng.choice(SENTENCES) for _ in range(k)))
    return texts


def long_text(n_chars: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    parts, size = [], 0
    while size < n_chars:
        s = rng.choice(SENTENCES) + rng.choice([" ", "\n", " "])
        parts.append(s)
        size += len(s)
    return "".join(parts)[:n_chars]
