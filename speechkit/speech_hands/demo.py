"""The Speech-Hands routing demo (notebook 42_routing_demo, also served by Voila): a browser of routing decisions.

`RoutingBrowser`: filter by emitted token, by whether routing was right and by domain; a table of the matching
utterances; for the chosen one its audio, reference, internal transcript, external N-best, emitted token with its
probability, and the output with errors highlighted and its WER. Built on the generic browser of
`speechkit.ui.widgets`; its logic is plain Python over the widgets' values, so tests drive it headlessly.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import ipywidgets as widgets

from speechkit.data.manifest import Utterance
from speechkit.speech_hands.routing import ACTIONS, Decision, word_errors
from speechkit.ui.display import highlight_errors
from speechkit.ui.widgets import Browser, audio_player, rows_table, select_first

ALL = "all"
TABLE_ROWS = 50  # rows the routing table shows at once (the filters narrow it down)


class RoutingBrowser(Browser):
    """Browse routing decisions: filters, the routing table, and the chosen utterance in detail."""

    def __init__(self, decisions: Sequence[Decision], utterances: Sequence[Utterance], data_dir: str | Path):
        if not decisions:
            raise ValueError("nothing to browse: no routing decisions")
        self.decisions, self.data_dir = list(decisions), Path(data_dir)
        self.utterances = {u.id: u for u in utterances}
        missing = [d.id for d in self.decisions if d.id not in self.utterances]
        if missing:
            raise ValueError(f"decisions for utterances not in the manifests given: {missing[:3]}")
        self.token = widgets.Dropdown(options=[ALL, *(f"<{a}>" for a in ACTIONS)], description="token")
        self.correct = widgets.Dropdown(options=[ALL, "right", "wrong"], description="routing")
        self.domain = widgets.Dropdown(options=[ALL, *sorted({d.domain for d in self.decisions})],
                                       description="domain")
        self.summary = widgets.HTML()
        self.table = widgets.HTML()
        self.choice = widgets.Dropdown(description="utterance", layout=widgets.Layout(width="60%"))
        self.player = widgets.Box()
        self.details = widgets.HTML()
        for control in (self.token, self.correct, self.domain):
            control.observe(lambda _: self.refresh(), "value")
        self.choice.observe(lambda _: self.show(), "value")
        self.widget = widgets.VBox([widgets.HBox([self.token, self.correct, self.domain]), self.summary, self.table,
                                    self.choice, self.player, self.details])
        self.refresh()

    def filtered(self) -> list[Decision]:
        token, correct, domain = self.token.value, self.correct.value, self.domain.value
        return [d for d in self.decisions
                if (token == ALL or token == f"<{d.action}>")
                and (correct == ALL or (correct == "right") == d.right)
                and (domain == ALL or domain == d.domain)]

    def refresh(self) -> None:
        shown = review_order(self.filtered())
        right = sum(d.right for d in shown)
        self.summary.value = (f"<b>{len(shown)}</b> of {len(self.decisions)} utterances match; routing right on "
                              f"{right} of them" + (f" (table shows the first {TABLE_ROWS})"
                                                    if len(shown) > TABLE_ROWS else ""))
        self.table.value = routing_table(shown[:TABLE_ROWS])
        self.choice.options = [(f"{d.id} <{d.action}>", d.id) for d in shown]
        select_first(self.choice)
        self.show()

    def show(self) -> None:
        decision = next((d for d in self.decisions if d.id == self.choice.value), None)
        if decision is None:
            self.player.children, self.details.value = (), "<i>no utterance matches the filters</i>"
            return
        self.player.children = (audio_player(self.utterances[decision.id], self.data_dir),)
        self.details.value = decision_details(decision)


def _wer(decision: Decision, text: str) -> str:
    errors, length = word_errors(decision.reference, text, decision.language)
    return f"{100 * errors / max(length, 1):.0f}%"


def review_order(decisions: Sequence[Decision]) -> list[Decision]:
    """Wrong decisions first, the most confident first within each group: the cases worth looking at lead."""
    return sorted(decisions, key=lambda d: (d.right, -d.action_probability))


def routing_table(decisions: Sequence[Decision]) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("id", "domain", "label", "emitted (p)", "routing", "output WER",
                                            "internal WER", "external WER"))
    rows = []
    for d in decisions:
        cells = (html.escape(d.id), html.escape(d.domain), f"&lt;{d.label}&gt;",
                 f"&lt;{d.action}&gt; ({d.action_probability:.2f})", "right" if d.right else "<b>wrong</b>",
                 _wer(d, d.output), _wer(d, d.internal), _wer(d, d.external[0].text))
        colour = "#e6f4ea" if d.right else "#fce8e6"  # green: routing right, red: wrong
        rows.append(f'<tr class="routing-row {"right" if d.right else "wrong"}" style="background:{colour}">'
                    + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f'<table class="routing-table"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def decision_details(d: Decision) -> str:
    nbest = "<br>".join(f"({i}) {highlight_errors(d.reference, h.text, d.language)} "
                        f"<small>score {h.score:.2f}</small>" for i, h in enumerate(d.external, 1))
    rows = [("reference", html.escape(d.reference)),
            ("internal", highlight_errors(d.reference, d.internal, d.language) + f" <small>WER {_wer(d, d.internal)}"
                                                                                 "</small>"),
            ("external N-best", nbest),
            ("emitted token", f"&lt;{d.action}&gt; with probability {d.action_probability:.2f} "
                              f"(label &lt;{d.label}&gt;: {'right' if d.right else 'wrong'})"),
            ("output", highlight_errors(d.reference, d.output, d.language) + f" <small>WER {_wer(d, d.output)}"
                                                                             "</small>")]
    return rows_table(rows, f"{d.id} · {d.domain}")
