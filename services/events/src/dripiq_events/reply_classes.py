"""What a person's reply asks for, read by keyword rules when no AI model is configured: no I/O.

The rules read only what the person wrote (reply_text.new_text): our own mail quoted below a
reply is full of "book a call" and "let's talk", and must never answer for them. Cues are
checked in order of what costs most to get wrong: an unsubscribe request missed is mail sent
against someone's wish, so it wins over everything; a "no" wins over any friendly word in it.
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum

from dripiq_events.reply_text import new_text


class ReplyClass(StrEnum):
    INTERESTED = "interested"
    NOT_INTERESTED = "not_interested"
    REFERRAL = "referral"
    UNSUBSCRIBE_REQUEST = "unsubscribe_request"
    QUESTION = "question"
    OTHER = "other"


def _compile(*patterns: str) -> tuple[re.Pattern[str], ...]:
    # Patterns are written lower case and without accents: _folded() reads the text that way.
    return tuple(re.compile(pattern) for pattern in patterns)


# Asking to be removed in so many words; "don't remove me" is not (see _negated).
_UNSUBSCRIBE = _compile(
    r"\bunsubscrib\w*",
    r"\bopt(?:[- ]?(?:me|us))?[- ]?out\b",
    r"\btake (?:me|us|my (?:name|email|e-mail|address)) off\b",
    r"\bremove (?:me|us|my (?:name|email|e-mail|address|details|contact\w*))\b",
    r"\bdelete my (?:data|details|information|email|e-mail|address|contact\w*)\b",
    r"\bdesabonn\w*",
    r"\bdesinscri\w*",
    r"\b(?:retirez|supprimez|enlevez|effacez)[- ](?:moi|nous)\b",
    r"\b(?:retirer|supprimer|enlever) (?:mon adresse|mes coordonnees|mon (?:nom|e-?mail|courriel))\b",
    r"\babmelden\b",
    r"\babbestell\w*",
    r"\baustragen\b",
    r"\b(?:tragen|nehmen|streichen) sie (?:mich|uns)\b.{0,40}\b(?:aus|heraus|raus)\b",
    r"\b(?:entfernen|loschen) sie (?:mich|uns|meine)\b",
    r"\bde baja\b",
    r"\bcancelar (?:la |mi )?suscripcion\b",
    r"\b(?:quitar|sacar|eliminar|borrar)(?:me|nos)? de (?:la|su|sus|vuestra|esta) lista\b",
    r"\b(?:quitenme|saquenme|eliminenme|borrenme)\b",
)
# Asking to be left alone through a negation: the guard against negations would misread them.
_STOP_WRITING = _compile(
    r"\bstop (?:emailing|e-mailing|mailing|contacting|messaging|sending|writing|spamming)\b",
    r"\b(?:do not|don't|dont|never) (?:email|e-mail|contact|message|write to) (?:me|us)\b",
    r"\b(?:do not|don't|dont) send (?:me|us) (?:any )?more\b",
    r"\bno (?:more|further) (?:emails?|e-mails?|messages?|contact)\b",
    r"\bleave (?:me|us) alone\b",
    r"\bplus recevoir\b",
    r"\b(?:ne|n') ?(?:me|nous) (?:contactez|ecrivez|envoyez|sollicitez) plus\b",
    r"\barretez de (?:m'|me |nous )?(?:ecrire|envoyer|contacter|solliciter)\w*",
    r"\bne plus (?:etre )?(?:contacte|sollicite)\w*",
    r"\bkeine weiteren (?:e-?mails|mails|nachrichten|newsletter)\b",
    r"\bkeine (?:e-?mails|mails|nachrichten|newsletter|werbung) mehr\b",
    r"\bnicht mehr (?:zu )?(?:kontaktieren|kontaktiert|anschreiben|anzuschreiben|schreiben)\b",
    r"\bno (?:me|nos) (?:\w+ )?(?:envien|escriban|contacten|manden) mas\b",
    r"\bdejen de (?:enviar|escribir|contactar)\w*",
    r"\bno (?:quiero|deseo|queremos|deseamos) recibir\b",
)
_NOT_INTERESTED = _compile(
    r"\bnot (?:\w+ )?interested\b",
    r"\b(?:no|zero|little) interest\b",
    r"\bno,? thanks?\b",
    r"\bno,? thank you\b",
    r"\bnot (?:a )?(?:good |great |right )?fit\b",
    r"\bnot for (?:us|me)\b",
    r"\bwe (?:already|currently) (?:have|use|work with|own|partner with)\b",
    r"\b(?:we're|we are) all set\b",
    r"\bnot (?:currently |actively )?(?:looking|in the market)\b",
    r"\bnot (?:at this|right) (?:time|now)\b",
    r"\bnot now\b",
    r"\b(?:we'll|we will|i'll|i will) pass\b",
    r"\bpass on this\b",
    r"\b(?:don't|do not|doesn't|does not) need\b",
    r"\bno need for (?:this|it|that|your)\b",
    r"\bnot (?:relevant|a priority|needed)\b",
    r"\bno budget\b",
    r"\bpas (?:\w+ )?interess\w*",
    r"\bpas d'interet\b",
    r"\bnon,? merci\b",
    r"\b(?:nous avons|on a|j'ai) deja (?:un|une|des|notre|nos|ce|cette|ca)\b",
    r"\bpas besoin\b",
    r"\binteresse(?:nt)? pas\b",
    r"\bpas pour (?:nous|moi|l'instant|le moment)\b",
    r"\bkein(?:e|en)? (?:\w+ )?interesse\b",
    r"\bnicht (?:\w+ )?interessiert\b",
    r"\bnein,? danke\b",
    r"\b(?:haben|nutzen|verwenden) (?:wir )?(?:bereits|schon) (?:ein|eine|einen|so)\b",
    r"\b(?:nutzen|verwenden) (?:wir )?(?:bereits|schon)\b",
    r"\bkein(?:en)? bedarf\b",
    r"\b(?:brauchen|benotigen) (?:wir |ich )?(?:das |so etwas |dies )?(?:nicht|keine?)\b",
    r"\bno (?:me|nos) interesa\w*",
    r"\bno (?:estoy|estamos) (?:\w+ )?interesad[oa]s?\b",
    r"\bno,? gracias\b",
    r"\bya (?:tenemos|contamos con) (?:un|una|otro|otra)\b",
    r"\bya (?:usamos|utilizamos|trabajamos con)\b",
    r"\bno (?:lo )?necesit\w+",
    r"\bsin interes\b",
    r"\bno es (?:para nosotros|el momento)\b",
)
_REFERRAL = _compile(
    r"\byou (?:should|could|might want to|may want to|can) (?:talk|speak|reach out|write|get in touch) (?:to|with)\b(?! (?:me|us)\b)",
    r"\byou (?:should|could|may want to|might want to) contact\b",
    r"\breach out to (?!me\b|us\b)",
    r"\b(?:i'm|i am) not the (?:right|best|correct|relevant) (?:person|contact|one)\b",
    r"\bnot the (?:right|best|correct) (?:person|contact)\b",
    r"\bwrong (?:person|contact)\b",
    r"\bcc'?(?:ing|'d|ed)\b",
    r"\b(?:looping|looped) in\b",
    r"\b(?:copied|copying|included) (?:in )?(?:my|our) (?:colleague|coworker|co-worker|boss|manager|team)\b",
    r"\bcontact \S+(?: \S+)? instead\b",
    r"\b(?:talk|speak) (?:to|with) \S+(?: \S+)? instead\b",
    r"\bforward(?:ed|ing)? (?:this|your (?:email|message|note)) to\b",
    r"\b(?:is|would be) the (?:right|best|correct) (?:person|contact)\b",
    r"\b(?:handles|looks after|is in charge of|is responsible for) (?:this|that|these|our|all)\b",
    r"\bpas la bonne personne\b",
    r"\b(?:adressez-vous|voyez avec|voir avec|merci de contacter|veuillez contacter|contactez plutot)\b",
    r"\ben copie\b",
    r"\bs'en (?:occupe|charge)\b",
    r"\b(?:est|sera) (?:la|le) (?:bonne |meilleure? )?(?:personne|interlocut\w+|contact)\b",
    r"\bnicht (?:der|die) richtige\b",
    r"\bnicht zustandig\b",
    r"\bwenden sie sich (?:bitte )?an\b",
    r"\bin (?:kopie|cc)\b",
    r"\b(?:ist|ware) (?:der|die) (?:richtige|bessere|zustandige)\b",
    r"\bzustandig (?:ist|sind|dafur)\b",
    r"\b(?:kontaktieren|schreiben) sie (?:bitte )?(?:stattdessen|lieber)\b",
    r"\bno soy la persona (?:adecuada|indicada|correcta)\b",
    r"\b(?:es|seria) la persona (?:adecuada|indicada|correcta)\b",
    r"\b(?:contacte|contacta|hable|habla|escriba|escribe|dirijase|dirigete) (?:con|a) (?!nosotros\b)",
    r"\ben copia\b",
    r"\bse encarga\b",
)
_INTERESTED = _compile(
    r"\bsounds? (?:good|great|interesting|promising|perfect)\b",
    r"\b(?:let's|lets|let us) (?:talk|chat|connect|meet|schedule|set up|find a time|do it|discuss|hop on|jump on|book)\b",
    r"\b(?:book|schedule|set up|arrange) (?:a |an |some )?(?:call|meeting|demo|time|chat|intro)\b",
    r"\bsend (?:me|us|over) (?:some |more |the |a |any )?(?:more|info|information|details|pricing|deck|proposal|brochure)\b",
    r"\b(?:tell|show) (?:me|us) more\b",
    r"\bmore (?:info|information|details)\b",
    r"\bhow about (?:mon|tues|wednes|thurs|fri|tomorrow|next|this|\d)\w*",
    r"\binterest(?:ed|ing)\b",
    r"\b(?:are you|you) (?:free|available)\b",
    r"\b(?:i'm|i am|we're|we are) (?:free|available) (?:on|at|next|tomorrow|this)\b",
    r"\bhappy to (?:chat|talk|meet|learn|hear|connect|take a look)\b",
    r"\b(?:would|i'd|we'd) (?:love|like|be glad|be happy) to (?:learn|hear|chat|talk|see|know|connect|meet|try)\b",
    r"\byes,? please\b",
    r"\b(?:count|sign) (?:me|us) (?:in|up)\b",
    r"\b(?:give me|give us) a call\b",
    r"\bcall me\b",
    r"\b(?:calendly|my calendar)\b",
    r"\bworks for (?:me|us)\b",
    r"\binteress\w*",
    r"\bavec plaisir\b",
    r"\bvolontiers\b",
    r"\b(?:on peut|pouvons-nous|pourrions-nous|pouvez-vous) (?:en )?(?:parler|discuter|echanger|s'appeler)\b",
    r"\b(?:caler|planifier|organiser|fixer) (?:un |une )?(?:appel|rendez-vous|rdv|reunion|demo|creneau)\b",
    r"\b(?:envoyez|appelez|contactez)[- ]moi\b",
    r"\bplus d'(?:informations|infos|details)\b",
    r"\bpourquoi pas\b",
    r"\bca me (?:va|convient)\b",
    r"\bgerne\b",
    r"\binteressant\b",
    r"\bklingt (?:gut|interessant|spannend)\b",
    r"\blassen sie uns (?:sprechen|telefonieren|reden|treffen)\b",
    r"\btermin(?:e|vorschlag\w*)?\b",
    r"\b(?:schicken|senden) sie (?:mir|uns) (?:gerne |bitte )?(?:mehr|weitere|infos|informationen|unterlagen)\b",
    r"\brufen sie mich an\b",
    r"\bmehr (?:infos|informationen|details)\b",
    r"\b(?:me|nos) interesa\w*",
    r"\binteresad[oa]s?\b",
    r"\binteresante\b",
    r"\bsuena (?:bien|interesante)\b",
    r"\bhablemos\b",
    r"\b(?:agendar|programar|coordinar|concretar|organizar) (?:una )?(?:llamada|reunion|demo|cita)\b",
    r"\b(?:enviame|envieme|envienme|mandame|mandeme|llamame|llameme)\b",
    r"\bmas informacion\b",
    r"\bcon gusto\b",
    r"\bme encantaria\b",
)
_QUESTION = _compile(
    r"\?",
    r"\bhow (?:much|many|does|do|long|would)\b",
    r"\bwhat (?:does|do|is|are)\b",
    r"\bwhat's\b",
    r"\bcombien\b",
    r"\bquel(?:le)?s? (?:est|sont)\b",
    r"\best-ce que\b",
    r"\bwie (?:viel|teuer|funktioniert|lange)\b",
    r"\bwas kostet\b",
    r"\bcuanto (?:cuesta|vale|cuestan|cobran)\b",
    r"\bcomo funciona\b",
    r"\bque (?:es|hace|incluye)\b",
)
_NEGATION_WORD = re.compile(
    r"^(?:not|never|no|ne|n'\w*|pas|nicht|nie|kein\w*|nunca|jamais|cannot|dont|\w*n't|sin)$",
)
# How many words back a negation reaches: "don't want to remove me", "not sure we'd be interested".
# Shorter for an unsubscribe request, where a missed one costs more than a false one: "I don't
# know how to unsubscribe" still asks for it.
_UNSUBSCRIBE_NEGATION_REACH = 3
_INTEREST_NEGATION_REACH = 4
# "Re: <our subject>" repeats our words; a subject of their own ("Unsubscribe") is theirs.
_REPLY_SUBJECT = re.compile(r"^\s*(?:re|aw|sv|antw|r|rif|tr|fw|fwd|wg|rv|res|ref)\s*(?:\[\d+\])?\s*:", re.IGNORECASE)


def classify_by_rules(subject: str, text: str) -> ReplyClass:
    """The class of a person's reply from keyword cues in English, French, German and Spanish."""
    own_subject = "" if _REPLY_SUBJECT.match(subject) else subject
    words = _folded(f"{own_subject}\n{new_text(text)}")
    if _any_affirmed(_UNSUBSCRIBE, words, reach=_UNSUBSCRIBE_NEGATION_REACH) or _any(_STOP_WRITING, words):
        return ReplyClass.UNSUBSCRIBE_REQUEST
    if _any(_NOT_INTERESTED, words):
        return ReplyClass.NOT_INTERESTED
    if _any(_REFERRAL, words):
        return ReplyClass.REFERRAL
    if _any_affirmed(_INTERESTED, words, reach=_INTEREST_NEGATION_REACH):
        return ReplyClass.INTERESTED
    if _any(_QUESTION, words):
        return ReplyClass.QUESTION
    return ReplyClass.OTHER


def _folded(text: str) -> str:
    """Lower case, no accents, one kind of apostrophe: "Désabonnez-moi" reads "desabonnez-moi"."""
    decomposed = unicodedata.normalize("NFKD", text.casefold().replace("’", "'").replace("`", "'"))
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def _any(patterns: tuple[re.Pattern[str], ...], words: str) -> bool:
    return any(pattern.search(words) for pattern in patterns)


def _any_affirmed(patterns: tuple[re.Pattern[str], ...], words: str, *, reach: int) -> bool:
    return any(
        not _negated(words, match.start(), reach=reach) for pattern in patterns for match in pattern.finditer(words)
    )


def _negated(words: str, start: int, *, reach: int) -> bool:
    """Whether one of the `reach` words before start, in the same clause, is a negation. A cue
    that starts inside a word ("n'intéresse") has the glued "n'" as the last of them."""
    clause = re.split(r"[.!?;,\n]", words[:start])[-1]
    return any(_NEGATION_WORD.match(word.strip("\"'()*")) for word in clause.split()[-reach:])
