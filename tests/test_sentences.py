"""Sentence splitter: labelled news-shaped cases in several languages, and the span invariants.

CASES and HARD_CASES are also what bench/sentences.py measures every candidate splitter on. All the text
was written for these tests (news-shaped, not copied from articles).
"""

from __future__ import annotations

import pytest

from pipeline.sentences import sentence_spans, split_sentences

# Each case: the gold sentences of one paragraph, joined by one space to make the paragraph.
CASES: list[list[str]] = [
    # English: dates, months, abbreviations before numbers
    ["Armenian forces launched an attack on positions along the front line on Sept. 27.",
     "Azerbaijan responded with a counter-offensive."],
    ["The ministry said on Oct. 10 that talks would resume in Geneva.", "No date was given."],
    ["The ceasefire was signed on Jan. 5, 2021, in Moscow.", "It held for three weeks."],
    ["Parliament will debate the bill on Nov. 3 and vote on Dec. 1.", "The opposition has promised to block it."],
    ["Flight No. 5 landed safely at 6:40 a.m. local time.", "Passengers were taken to a terminal."],
    ["The meeting ended at 3 p.m. Monday without an agreement."],
    ["The talks began at 9 a.m.", "The delegations left before noon."],
    ["Inflation rose 3.5 percent in March, the central bank said.", "Economists had expected 3.1 percent."],
    ["The company reported revenue of $1.2 billion for the quarter.", "Its shares rose 4.7 percent."],
    ["Section 2.4 of the agreement covers pipeline tariffs."],
    # English: acronyms and titles
    ["The U.N. Security Council met behind closed doors on Tuesday.", "Russia and France called the session."],
    ["The sanctions were announced by the U.S. Treasury Department.", "They target four banks."],
    ["The proposal was rejected by the U.S.", "The E.U. has not yet responded."],
    ["U.S. President Joe Biden spoke with the Turkish leader by phone.", "The call lasted an hour."],
    ["Lt. Col. Anar Mammadov told reporters the unit had withdrawn.", "He gave no further details."],
    ["Gen. Mark Thompson and Adm. Lisa Grant will attend the summit.", "Both arrive on Thursday."],
    ["Dr. Elena Petrova, who leads the clinic, said the outbreak was contained.",
     "Mr. Jones disagreed with her assessment."],
    ["Prof. Kemal Arslan of Ankara University said the findings were preliminary."],
    ["The march started at St. Paul's Cathedral and ended near the river."],
    ["J. R. Smith was named chairman of the board.", "He replaces A. B. Carter, who retired in June."],
    ["John F. Kennedy International Airport was closed for two hours."],
    ["The case, Smith vs. Jones, will be heard next month."],
    ["Several countries, e.g. Georgia and Moldova, have applied.", "Others, i.e. the smaller states, have not."],
    ["Acme Holdings Inc. said on Friday it would cut 300 jobs.", "The unions protested."],
    ["The deal was signed by Acme Inc.", "The price was not disclosed."],
    ["Brown & Co. has advised the government since 2015."],
    ["Officials from the State Dept. declined to comment."],
    ["Sales of oil, gas, metals, etc. fell sharply.", "Imports were flat."],
    # English: quotes, brackets, ? and !
    ['"We will not give up an inch of our land," the president said.', "He spoke in Baku."],
    ['"The talks have failed."', "That was how the envoy put it."],
    ['The spokesman said: "The border is closed."', "Trucks queued for miles."],
    ['"Is this the end of the war?" he asked.', "Nobody answered."],
    ["Will the truce hold?", "Few analysts think so."],
    ["Stop the shelling now!", "That was the message from the crowd."],
    ["The plant (built in 1987.) was closed last year.", "Workers were moved to other sites."],
    ["The company said profits fell (see table below).", "Revenue was stable."],
    ["The minister denied the report.", "(He later confirmed it.)", "Parliament asked for an inquiry."],
    # English: ellipses, URLs, numbers, versions, emails
    ["The statement ended abruptly... and no questions were taken."],
    ["He paused for a long time...", "Then he left the podium."],
    ["The full text is available at www.example.gov.az/statement.html for readers.",
     "Comments can be sent to press@example.org by Friday."],
    ["Details were posted on example.com.", "The site crashed within an hour."],
    ["The update to version 2.3.1 fixes the bug.", "Version 3.0 is due next year."],
    ["The index closed at 1,234.56 points.", "Trading volume was low."],
    ["The budget was approved in 2019.", "In 2020 it was cut by a fifth."],
    ["The new bridge is 1.5 km long and cost 2.3 bn manat."],
    ["The 1994 ceasefire agreement was signed in Bishkek.", "It was never fully observed."],
    ["Police said 12 people were injured.", "Eight of them were taken to hospital."],
    # Russian
    ["Конфликт начался в 1988 г. после территориальных претензий.", "Переговоры продолжаются до сих пор."],
    ["Это произошло в 1991 г.", "В Москве прошли массовые митинги."],
    ["Митинг прошёл на ул. Ленина в центре города.", "Полиция задержала трёх человек."],
    ["Школа им. Пушкина была закрыта на карантин.", "Занятия перенесены на апрель."],
    ["Власти закупили муку, сахар, масло и т.д.", "Цены на них выросли."],
    ["Речь идёт о малом бизнесе, т.е. о компаниях с числом сотрудников до 50 человек."],
    ["Об этом заявил А. С. Иванов, глава комитета.", "Он не назвал сроков."],
    ["«Мы не отступим», — сказал министр.", "Его слова встретили аплодисментами."],
    ["Министр сказал: «Переговоры зашли в тупик».", "Следующий раунд пока не назначен."],
    ["Бюджет составил 3,5 млрд руб.", "Это на 10% больше, чем в прошлом году."],
    ["Почему это произошло?", "Ответа пока нет."],
    # Azerbaijani
    ["Azərbaycan Ordusu sentyabrın 27-də əks-hücum əməliyyatına başlayıb.", "Bir neçə kənd azad edilib."],
    ["Prezident İlham Əliyev xalqa müraciət edib.", "O, döyüşlərin davam etdiyini bildirib."],
    ["Görüşdə iqtisadiyyat, energetika və s. məsələlər müzakirə olunub."],
    ["Dr. Əli Həsənov bəyanat verib.", "Bəyanatda atəşkəsin pozulduğu qeyd edilib."],
    # Turkish
    ["Milli Savunma Bakanlığı açıklama yaptı.", "Açıklamada saldırının kınandığı belirtildi."],
    ["Prof. Dr. Ahmet Yılmaz konferansta konuştu.", "Konuşması büyük ilgi gördü."],
    ["Toplantıda enerji, ulaşım, ticaret vb. konular ele alındı."],
    ["İstanbul'da yağmur bekleniyor.", "İzmir'de ise hava güneşli olacak."],
    ["Bu karar neden alındı?", "Bakan soruyu yanıtlamadı."],
    # French
    ["Le président a rencontré M. Dupont à l'Élysée.", "La rencontre a duré une heure."],
    ["« Nous ne céderons pas », a déclaré la ministre.", "Elle s'exprimait devant l'Assemblée."],
    ["La grève a commencé le 5 décembre.", "Les transports sont perturbés."],
    ["Qui paiera la facture ?", "Le gouvernement n'a pas répondu."],
    # German
    ["Am 3. Oktober 1990 wurde Deutschland wiedervereinigt.", "Der Tag ist seither ein Feiertag."],
    ["Die Firma meldete einen Umsatz von 5 Mio. Euro.", "Das ist ein Rückgang um 4 Prozent."],
    ["Viele Länder, z.B. Polen und Ungarn, lehnen den Plan ab.", "Die Kommission will nachverhandeln."],
    ["Dr. Müller sagte, die Lage sei ernst.", "Die Regierung prüft neue Maßnahmen."],
    ["Der 2. Weltkrieg endete in Europa im Mai 1945."],
    # Spanish, Italian, Portuguese
    ["El Sr. García llegó a Madrid el lunes.", "Se reunirá con el ministro."],
    ["¿Qué pasará con los acuerdos?", "¡Nadie lo sabe!", "La cumbre terminó sin comunicado."],
    ["Las exportaciones a EE.UU. crecieron un 4,5 por ciento.", "Las importaciones cayeron."],
    ["Il governo ha approvato la legge.", "L'opposizione ha annunciato un ricorso."],
    ["O ministro falou à imprensa.", "Ele não respondeu a perguntas."],
    # Arabic
    ["قال الوزير إن المحادثات ستستأنف الأسبوع المقبل.", "ولم يحدد موعدا دقيقا."],
    ["هل ستصمد الهدنة؟", "يشكك المحللون في ذلك."],
    ["وصرح د. أحمد علي بأن الوضع مستقر.", "وأضاف أن المساعدات وصلت."],
    # Georgian (caseless script: "." before any word ends a sentence)
    ["მინისტრმა განცხადება გააკეთა.", "მოლაპარაკებები გაგრძელდება."],
    # Hindi
    ["सरकार ने नई नीति की घोषणा की।", "विपक्ष ने इसका विरोध किया।"],
    # no final punctuation, single sentences, dash openers
    ["Talks resume in Geneva"],
    ["The president arrived in Baku on Monday."],
    ["The attack was condemned.", "— Reporting by staff in Baku."],
]

# Chinese/Japanese: the gold sentences are joined with nothing (no space after 。！？).
CJK_CASES: list[list[str]] = [
    ["外交部发言人周一表示，谈判将继续进行。", "双方尚未达成协议。"],
    ["停火能否维持？", "分析人士表示怀疑。"],
    ["政府宣布了新的经济措施！", "市场反应积极。"],
    ["首相は記者会見で「交渉を続ける」と述べた。", "詳細は明らかにしなかった。"],
    ["「本当に終わったのか？」と彼は尋ねた。", "誰も答えなかった。"],
    ["“我们不会让步。”他说。", "会谈将于明天继续。"],
    ["「交渉は続く。」", "「合意は近い。」"],
]

# Boundaries a punctuation-and-word-list splitter cannot see: the splitter may miss them (its output then
# has fewer sentences) but must never split anywhere else.
HARD_CASES: list[list[str]] = [
    ["The toll rose to 12.", "Officials expect it to climb."],
    ["Fighting resumed on Sept. 27.", "Azerbaijan said its forces had responded."],
    ["The company moved its headquarters to the U.S.", "Analysts welcomed the decision."],
    ["Talks were held in the St. Petersburg office of Gazprom Co.", "Officials gave no details."],
    ["Ankara'da 2. Dünya Savaşı anması düzenlendi."],
    ["She wrote the report with J. Smith.", "It was published in May."],
]


def labelled_cases() -> list[tuple[str, list[str]]]:
    """Every labelled case as (paragraph, gold sentences); the bench imports this."""
    return [(" ".join(s), s) for s in CASES] + [("".join(s), s) for s in CJK_CASES]


def hard_cases() -> list[tuple[str, list[str]]]:
    return [(" ".join(s), s) for s in HARD_CASES]


def gold_boundaries(text: str, sentences: list[str]) -> set[int]:
    """End offsets of every gold sentence but the last (the paragraph's end is not a decision)."""
    ends, pos = [], 0
    for s in sentences:
        pos = text.index(s, pos) + len(s)
        ends.append(pos)
    return set(ends[:-1])


def check_invariants(text: str, spans: list[tuple[int, int]]) -> None:
    prev_end = 0
    for start, end in spans:
        assert prev_end <= start < end <= len(text)
        piece = text[start:end]
        assert piece == piece.strip(), piece
        assert not text[prev_end:start].strip(), "non-whitespace left outside every span"
        prev_end = end
    assert not text[prev_end:].strip()


@pytest.mark.parametrize(("text", "gold"), labelled_cases(), ids=lambda v: v[:40] if isinstance(v, str) else "")
def test_labelled_case(text: str, gold: list[str]) -> None:
    assert split_sentences(text) == gold
    check_invariants(text, sentence_spans(text))


@pytest.mark.parametrize(("text", "gold"), hard_cases(), ids=lambda v: v[:40] if isinstance(v, str) else "")
def test_hard_case_never_splits_wrongly(text: str, gold: list[str]) -> None:
    spans = sentence_spans(text)
    check_invariants(text, spans)
    predicted = {end for _, end in spans[:-1]}
    assert predicted <= gold_boundaries(text, gold)


@pytest.mark.parametrize("text", ["", " ", "   \t "])
def test_empty_or_blank_is_no_sentence(text: str) -> None:
    assert sentence_spans(text) == []
    assert split_sentences(text) == []


def test_one_line_without_final_punctuation_is_one_sentence() -> None:
    assert sentence_spans("Azerbaijan and Turkey sign a gas deal") == [(0, 37)]


def test_spans_skip_outer_whitespace() -> None:
    text = "  The talks failed.  Both sides left. "
    assert [text[s:e] for s, e in sentence_spans(text)] == ["The talks failed.", "Both sides left."]
    check_invariants(text, sentence_spans(text))


def test_offsets_are_code_points() -> None:
    text = "Ильхам Алиев выступил. 首相が来た。Then he left."
    spans = sentence_spans(text)
    assert [text[s:e] for s, e in spans] == ["Ильхам Алиев выступил.", "首相が来た。", "Then he left."]
    assert spans[1] == (23, 29)


def test_punctuation_only_and_odd_input_keeps_invariants() -> None:
    for text in [".", "...", "?!", ". . .", "a. b. c.", "“.” «.»", "。。。", "1. 2. 3.", "U.S. U.K. E.U.",
                 "Mr. . Dr.", "(", "x" * 500, "word. " * 200, "。a。 b 。"]:
        check_invariants(text, sentence_spans(text))
