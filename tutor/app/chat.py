"""The student's side of the chat: what happens on a question, a thumbs up/down, a course switch.

Every handler takes the conversation (`session`, a plain dict kept per browser tab in a `gr.State`)
and returns a new one; nothing here remembers a conversation between calls. A session holds:

    id        the Gradio session hash (set on the first question); feedback must come from it
    course    the course being asked about; switching course starts a new conversation
    messages  the chat as shown (Gradio's role/content messages)
    history   (question, answer text) pairs: the tutor's conversation memory
    turns     per answer: its chat-log id and what the sources panel shows for it
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator

import gradio as gr

from ingest.course import CourseConfig
from tutor.app.render import answer_markdown, banner_markdown, sources_html
from tutor.chatlog import ChatLog, ChatLogError
from tutor.errors import TutorError
from tutor.quotas import QuotaBook, QuotaExceeded

HISTORY_TURNS = 6            # earlier exchanges handed to the tutor as conversation memory
STARTERS = 4
MAX_QUESTION_CHARS = 2000   # longer is a paste of a whole assignment or a flood, not a question
PLACEHOLDER = "…"
RESET_NOTE = "_Checking the draft against the course rules…_"
STREAM_INTERVAL_S = 0.05    # shortest time between two updates of a streaming answer in the browser


def new_session(course: str, session_id: str | None = None) -> dict:
    return {"id": session_id, "course": course, "messages": [], "history": [], "turns": []}


def starter_questions(course: CourseConfig, today: dt.date | None = None, limit: int = STARTERS) -> list[str]:
    """Questions about this week's lectures: those dated within the last 7 days, else the latest
    ones taught, else (before term) the first ones."""
    today = today or dt.date.today()
    dated = sorted((s for s in course.schedule if s.topic), key=lambda s: s.date)
    recent = [s for s in dated if today - dt.timedelta(days=7) <= s.date <= today]
    taught = [s for s in dated if s.date <= today]
    chosen = recent or taught[-2:] or dated[:2]
    questions = []
    for lecture in reversed(chosen):
        for topic in _topics(lecture.topic):
            question = f"Can you explain {topic}?"
            if question not in questions:
                questions.append(question)
    return questions[:limit]


def _topics(topic: str) -> list[str]:
    """'Backpropagation and computational graphs' -> ['backpropagation', 'computational graphs']."""
    pieces = [p.strip() for chunk in topic.replace(";", ",").split(",") for p in chunk.split(" and ")]
    return [p if p[:2].isupper() else p[:1].lower() + p[1:] for p in pieces if p]


def _message_turn(data) -> int:
    """The answer a chatbot event points at: messages alternate question, answer."""
    index = data.index if isinstance(data.index, int) else data.index[0]
    return index // 2


class StudentChat:
    """The handlers of the Ask tab, over the shared tutors and chat log."""

    def __init__(self, tutors, chatlog: ChatLog, default_course: str):
        self.tutors = tutors
        self.chatlog = chatlog
        self.default_course = default_course
        self.quotas = QuotaBook(chatlog.engine)    # per session id, from the course's [quotas]

    def course_of(self, course: str | None) -> str:
        return course if course in self.tutors.courses() else self.default_course

    def respond(self, message: str, session: dict, course: str, mode: str, request: gr.Request) -> Iterator:
        """Stream one answer. Yields (chat messages, sources HTML, question box, session, the feedback
        form's answer picker)."""
        message = (message or "").strip()
        if not message:
            yield gr.skip(), gr.skip(), gr.skip(), session, gr.skip()
            return
        if len(message) > MAX_QUESTION_CHARS:
            raise gr.Error(f"Your question is {len(message):,} characters long; please keep it under "
                           f"{MAX_QUESTION_CHARS:,} (ask about one thing at a time, and paste only the lines "
                           "that matter).", print_exception=False)
        course = self.course_of(course)
        if session.get("course") != course:
            session = new_session(course, session.get("id"))
        if not session.get("id"):
            session = {**session, "id": getattr(request, "session_hash", None) or uuid.uuid4().hex}
        tutor = self.tutors.get(course)
        try:
            self.quotas.admit(session["id"], course, tutor.course.quotas)
        except QuotaExceeded as exc:  # "...; you can ask again at 14:05."
            raise gr.Error(str(exc), print_exception=False) from None
        messages = [*session["messages"], {"role": "user", "content": message}]
        # Values, not gr.skip(): Gradio builds a new component for every skipped output of every update
        # (about 0.5 ms of the server's CPU each), and the sources panel should not show the last
        # answer's sources beside the new question anyway.
        pending = sources_html(None, message)
        yield [*messages, {"role": "assistant", "content": PLACEHOLDER}], pending, "", session, gr.skip()
        streamed, answer, shown_at = "", None, 0.0
        live = tutor.backend.streams      # an extractive answer comes whole: one update, not three
        try:
            for event in tutor.stream(message, history=session["history"][-HISTORY_TURNS:],
                                      mode=mode if mode in ("explain", "socratic") else None):
                if event.kind == "answer":
                    answer = event.answer
                    break
                streamed = streamed + event.text if event.kind == "delta" else ""   # "reset": draft withheld
                # Each update re-sends the conversation: a model's stream shows its first text at once, then
                # at most every STREAM_INTERVAL_S, so it still looks live; an answer that comes whole
                # (extractive) is shown once, with its sources, below.
                if live and (time.monotonic() - shown_at >= STREAM_INTERVAL_S or event.kind == "reset"):
                    shown_at = time.monotonic()
                    shown = {"role": "assistant", "content": streamed or RESET_NOTE}
                    yield [*messages, shown], pending, gr.skip(), session, gr.skip()  # unchanged: not re-sent
        except TutorError as exc:
            raise gr.Error(str(exc)) from None
        if answer is None:
            raise gr.Error("The tutor stopped without an answer; please ask again.")
        data = answer.to_dict()
        chat_id = self.chatlog.log_answer(session["id"], data)
        turn = {"chat_id": chat_id, "course": course, "question": message, "citations": [], "demos": data["demos"]}
        for citation in data["citations"]:
            row = tutor.index.row_of.get(citation["chunk_id"])
            passage = tutor.index.chunks[row].text if row is not None else citation["quote"]
            turn["citations"].append({**citation, "passage": passage})
        session = {**session, "messages": [*messages, {"role": "assistant", "content": answer_markdown(data)}],
                   "history": [*session["history"], (message, answer.text)], "turns": [*session["turns"], turn]}
        # The feedback form's answer picker comes with the answer, not in a second event after it.
        yield session["messages"], sources_html(turn), gr.skip(), session, self.answer_choices(session)

    def answer_choices(self, session: dict):
        """The feedback form's answer picker: this conversation's answers, the latest chosen."""
        choices = [(f"{i + 1}. {t['question'][:70]}", t["chat_id"]) for i, t in enumerate(session["turns"])]
        return gr.update(choices=choices, value=choices[-1][1] if choices else None)

    def on_like(self, session: dict, data: gr.LikeData):
        """A thumb on a message: stored at once, and the form opened for a category and comment."""
        turn = _message_turn(data)
        if data.liked not in (True, False) or turn >= len(session["turns"]):
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        chat_id = session["turns"][turn]["chat_id"]
        rating = 1 if data.liked else -1
        self.chatlog.record_feedback(chat_id, session["id"], rating)
        note = "Thanks! You can add what was wrong and a comment below." if rating < 0 else "Thanks for the feedback!"
        return gr.update(value=chat_id), str(rating), gr.update(open=True), note

    def send_feedback(self, chat_id, rating, category, comment, session: dict):
        """The feedback form: rating, optional category and comment on one of this session's answers."""
        owned = {t["chat_id"] for t in session.get("turns", [])}
        try:
            chat_id = int(chat_id)
            if chat_id not in owned:
                raise ChatLogError("pick one of the answers you were given in this conversation")
            if rating in (None, ""):
                raise ChatLogError("choose thumbs up or thumbs down first")
            self.chatlog.record_feedback(chat_id, session["id"], int(rating), category or None, comment or "")
        except (TypeError, ValueError) as exc:  # ChatLogError is a ValueError
            raise gr.Error(f"Feedback not saved: {exc}") from None
        return "Thanks, your feedback was saved.", ""

    def show_turn_sources(self, session: dict, data: gr.SelectData):
        """Clicking an earlier message shows that answer's sources."""
        turn, turns = _message_turn(data), session.get("turns", [])
        return sources_html(turns[turn]) if turn < len(turns) else gr.skip()

    def start_page(self, course: str):
        """A fresh conversation for `course`: (session, chat, sources, banner, answer picker, *starters)."""
        course = self.course_of(course)
        tutor = self.tutors.get(course)
        questions = starter_questions(tutor.course)
        buttons = [gr.update(value=q, visible=True) for q in questions]
        buttons += [gr.update(visible=False)] * (STARTERS - len(buttons))
        banner = banner_markdown(tutor.course, tutor.backend.name, tutor.backend.model)
        return (new_session(course), [], sources_html(None), banner,
                gr.update(choices=[], value=None), *buttons)
