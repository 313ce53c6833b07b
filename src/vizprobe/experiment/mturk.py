"""`vizprobe mturk-hit`: the MTurk HIT that brings workers to a running study, as a CreateHIT request file.

vizprobe does not hold AWS credentials: it writes the request (an ExternalQuestion pointing at the study's URL,
the reward, the assignment duration and the worker qualifications) for the researcher to post with their own
account, e.g. `aws mturk create-hit --cli-input-json file://hit.json` (add `--endpoint-url
https://mturk-requester-sandbox.us-east-1.amazonaws.com` to try it in the sandbox first). The defaults are the
protocol's: under zimmermann2021 the authors' (`tools/mturk/mturk.py`, `run_counterfactual_experiment_*.sh`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

from vizprobe.errors import VizprobeError
from vizprobe.files import atomic_write_json

# MTurk's system qualification types (their ids are fixed by MTurk).
LOCALE = "00000000000000000071"
HITS_APPROVED = "00000000000000000040"
PERCENT_APPROVED = "000000000000000000L0"
EXTERNAL_QUESTION = "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2006-07-14/ExternalQuestion.xsd"


@dataclass(frozen=True)
class MTurkSettings:
    """What a HIT asks for and pays; the defaults are the NeurIPS 2021 study's (docs/protocol.md)."""

    countries: tuple[str, ...] = ("US", "CA", "GB", "AU", "NZ", "IE")
    min_hits_approved: int = 1000
    min_percent_approved: int = 99
    # USD per task: the authors paid 1.95 where references were shown and 0.70 in `none` (shorter).
    reward_usd: float = 1.95
    reward_none_usd: float = 0.70
    # The longest session the exclusion keeps (900 s); MTurk ends an assignment held longer.
    assignment_duration_s: int = 900
    lifetime_s: int = 2 * 3600  # the authors re-posted HITs every 2 hours (`--hit-lifetime=2.0`)
    auto_approve_s: int = 0  # the authors approved every submission at once
    frame_height: int = 800
    # Places per HIT: MTurk takes 20 % commission from HITs of fewer than 10 assignments and 40 % from larger ones;
    # the authors posted one task per HIT and added an assignment per failed submission.
    hit_places: int = 9
    # The authors approved every submission (AutoApprovalDelayInSeconds 0); True rejects unfinished ones.
    reject_unfinished: bool = False
    title: str = "Image Classification"
    description: str = (
        "Academic survey in which you have to classify images, i.e. match them with another set of images."
    )

    def checked(self) -> MTurkSettings:
        if min(self.reward_usd, self.reward_none_usd) < 0.01:
            raise VizprobeError("--reward: MTurk pays at least 0.01 USD per assignment")
        if not 30 <= self.assignment_duration_s <= 31_536_000:
            raise VizprobeError("--assignment-duration: MTurk takes 30 s to 365 days")
        if not 1 <= self.hit_places <= 9:
            raise VizprobeError(f"--hit-places {self.hit_places}: 1 to 9 (10 or more doubles MTurk's commission)")
        if not 0 <= self.min_percent_approved <= 100:
            raise VizprobeError("--min-percent-approved: a percentage, 0 to 100")
        return self


def commission(reward_usd: float, places: int) -> float:
    """MTurk's fee per approved assignment: 20 % of the reward (40 % in HITs of 10 or more places), at least 0.01."""
    return max(0.01, round(reward_usd * (0.2 if places < 10 else 0.4), 4))


def start_page(url: str) -> str:
    """The HIT's page: the study's start page (`/start`), which opens the study in a window of its own."""
    parts = urlsplit(study_url(url))
    return parts._replace(path=parts.path.rstrip("/") + "/start").geturl()


def study_url(url: str) -> str:
    """The study's public URL, which MTurk requires to be HTTPS; a one-line error otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc:
        raise VizprobeError(f"--url {url!r}: MTurk loads only https:// pages; give the study's public HTTPS address")
    return url


def create_hit_request(url: str, assignments: int, settings: MTurkSettings, with_references: bool) -> dict:
    """The CreateHIT request (AWS MTurk API names): one HIT with `assignments` places, all sent to `url`, where
    `vizprobe serve --platform mturk` hands each worker a task."""
    settings = settings.checked()
    if assignments < 1:
        raise VizprobeError(f"--assignments {assignments}: must be at least 1")
    reward = settings.reward_usd if with_references else settings.reward_none_usd
    question = (
        f'<ExternalQuestion xmlns="{EXTERNAL_QUESTION}"><ExternalURL>{escape(start_page(url))}</ExternalURL>'
        f"<FrameHeight>{settings.frame_height}</FrameHeight></ExternalQuestion>"
    )
    guarded = {"ActionsGuarded": "DiscoverPreviewAndAccept"}
    return {
        "MaxAssignments": assignments,
        "LifetimeInSeconds": settings.lifetime_s,
        "AssignmentDurationInSeconds": settings.assignment_duration_s,
        "AutoApprovalDelayInSeconds": settings.auto_approve_s,
        "Reward": f"{reward:.2f}",
        "Title": settings.title,
        "Description": settings.description,
        "Question": question,
        "QualificationRequirements": [
            {
                "QualificationTypeId": LOCALE,
                "Comparator": "In",
                "LocaleValues": [{"Country": c} for c in settings.countries],
                **guarded,
            },
            {
                "QualificationTypeId": HITS_APPROVED,
                "Comparator": "GreaterThanOrEqualTo",
                "IntegerValues": [settings.min_hits_approved],
                **guarded,
            },
            {
                "QualificationTypeId": PERCENT_APPROVED,
                "Comparator": "GreaterThanOrEqualTo",
                "IntegerValues": [settings.min_percent_approved],
                **guarded,
            },
        ],
    }


def write_hit(
    stimuli: str | Path, url: str, out: str | Path, settings: MTurkSettings, assignments: int | None = None
) -> dict:
    """Write the HIT request for a stimulus package's study: by default one place per task, paid the reference
    conditions' reward unless the package's conditions are all without references."""
    from vizprobe.stimuli.manifest import Manifest

    manifest = Manifest.load(stimuli)
    with_references = any(c != "none" for c in manifest.conditions)
    request = create_hit_request(url, assignments or len(manifest.tasks), settings, with_references)
    atomic_write_json(out, request)
    return request


def with_overrides(settings: MTurkSettings, **options) -> MTurkSettings:
    """`settings` with the options that were given (None: keep)."""
    return replace(settings, **{k: v for k, v in options.items() if v is not None})
