"""The passages the language check scores models on: public domain, short, each with its source.

Chosen so that a working model of the family predicts them well (English for LLaMA and Vicuna,
German for mBLIP, Japanese for rinna's bilingual GPT-NeoX), and fixed byte for byte: the
example model is trained on the English one, and the bounds in `weightprep.language` are set
for these texts. docs/trust.md says why each is free to copy.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReferenceText:
    key: str
    title: str
    text: str
    source: str = ""


# Abraham Lincoln, the Gettysburg Address, 1863, the "Bliss copy" (the version Lincoln signed,
# as the Library of Congress and Cornell's copy print it). A work of a US president in 1863:
# public domain.
GETTYSBURG = (
    "Four score and seven years ago our fathers brought forth on this continent, a new nation, "
    "conceived in Liberty, and dedicated to the proposition that all men are created equal.\n\n"
    "Now we are engaged in a great civil war, testing whether that nation, or any nation so "
    "conceived and so dedicated, can long endure. We are met on a great battle-field of that "
    "war. We have come to dedicate a portion of that field, as a final resting place for those "
    "who here gave their lives that that nation might live. It is altogether fitting and proper "
    "that we should do this.\n\n"
    "But, in a larger sense, we can not dedicate -- we can not consecrate -- we can not hallow "
    "-- this ground. The brave men, living and dead, who struggled here, have consecrated it, "
    "far above our poor power to add or detract. The world will little note, nor long remember "
    "what we say here, but it can never forget what they did here. It is for us the living, "
    "rather, to be dedicated here to the unfinished work which they who fought here have thus "
    "far so nobly advanced. It is rather for us to be here dedicated to the great task "
    "remaining before us -- that from these honored dead we take increased devotion to that "
    "cause for which they gave the last full measure of devotion -- that we here highly resolve "
    "that these dead shall not have died in vain -- that this nation, under God, shall have a "
    "new birth of freedom -- and that government of the people, by the people, for the people, "
    "shall not perish from the earth.\n"
)

# The Brothers Grimm, "Die Sternthaler" (KHM 153), Kinder- und Hausmärchen, 1857 edition and
# spelling, as transcribed by German Wikisource ("Die Sternthaler (1857)"). Published 1857; both
# brothers died by 1863: public domain.
STERNTHALER = "Es war einmal ein kleines Mädchen, dem war Vater und Mutter gestorben, und es war so arm, daß es kein Kämmerchen mehr hatte darin zu wohnen und kein Bettchen mehr darin zu schlafen und endlich gar nichts mehr als die Kleider auf dem Leib und ein Stückchen Brot in der Hand, das ihm ein mitleidiges Herz geschenkt hatte. Es war aber gut und fromm. Und weil es so von aller Welt verlassen war, gieng es im Vertrauen auf den lieben Gott hinaus ins Feld.\n\nDa begegnete ihm ein armer Mann, der sprach „ach, gib mir etwas zu essen, ich bin so hungerig.“ Es reichte ihm das ganze Stückchen Brot und sagte „Gott segne dirs“ und gieng weiter. Da kam ein Kind das jammerte und sprach „es friert mich so an meinem Kopfe, schenk mir etwas, womit ich ihn bedecken kann.“ Da that es seine Mütze ab und gab sie ihm. Und als es noch eine Weile gegangen war, kam wieder ein Kind und hatte kein Leibchen an und fror: da gab es ihm seins: und noch weiter, da bat eins um ein Röcklein, das gab es auch von sich hin.\n\nEndlich gelangte es in einen Wald, und es war schon dunkel geworden, da kam noch eins und bat um ein Hemdlein, und das fromme Mädchen dachte „es ist dunkle Nacht, da sieht dich niemand du kannst wohl dein Hemd weg geben,“ und zog das Hemd ab und gab es auch noch hin. Und wie es so stand und gar nichts mehr hatte, fielen auf einmal die Sterne vom Himmel, und waren lauter harte blanke Thaler: und ob es gleich sein Hemdlein weg gegeben, so hatte es ein neues an und das war vom allerfeinsten Linnen. Da sammelte es sich die Thaler hinein und war reich für sein Lebtag.\n"

# Akutagawa Ryūnosuke, 羅生門 (1915), its first three paragraphs in modern orthography
# (新字新仮名) without ruby, as Aozora Bunko publishes it (card 127). Akutagawa died in 1927:
# public domain.
RASHOMON = "ある日の暮方の事である。一人の下人が、羅生門の下で雨やみを待っていた。\n\n広い門の下には、この男のほかに誰もいない。ただ、所々丹塗の剥げた、大きな円柱に、蟋蟀が一匹とまっている。羅生門が、朱雀大路にある以上は、この男のほかにも、雨やみをする市女笠や揉烏帽子が、もう二三人はありそうなものである。それが、この男のほかには誰もいない。\n\n何故かと云うと、この二三年、京都には、地震とか辻風とか火事とか饑饉とか云う災がつづいて起った。そこで洛中のさびれ方は一通りではない。旧記によると、仏像や仏具を打砕いて、その丹がついたり、金銀の箔がついたりした木を、路ばたにつみ重ねて、薪の料に売っていたと云う事である。洛中がその始末であるから、羅生門の修理などは、元より誰も捨てて顧る者がなかった。するとその荒れ果てたのをよい事にして、狐狸が棲む。盗人が棲む。とうとうしまいには、引取り手のない死人を、この門へ持って来て、棄てて行くと云う習慣さえ出来た。そこで、日の目が見えなくなると、誰でも気味を悪るがって、この門の近所へは足ぶみをしない事になってしまったのである。\n"

TEXTS: dict[str, ReferenceText] = {
    "en": ReferenceText(
        "en",
        "the Gettysburg Address",
        GETTYSBURG,
        "Abraham Lincoln, 1863, the Bliss copy (public domain)",
    ),
    "de": ReferenceText(
        "de",
        "Die Sternthaler (Grimm)",
        STERNTHALER,
        "Brüder Grimm, Kinder- und Hausmärchen, 1857, via German Wikisource (public domain)",
    ),
    "ja": ReferenceText(
        "ja",
        "羅生門 (Akutagawa)",
        RASHOMON,
        "芥川龍之介, 1915, via Aozora Bunko card 127 (public domain)",
    ),
}
