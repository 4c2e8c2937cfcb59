from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AnswerMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ANSWER_MODE_UNSPECIFIED: _ClassVar[AnswerMode]
    ANSWER_MODE_FREE: _ClassVar[AnswerMode]
    ANSWER_MODE_FORCE_ANSWER: _ClassVar[AnswerMode]

class CutMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CUT_MODE_UNSPECIFIED: _ClassVar[CutMode]
    CUT_MODE_TOKEN: _ClassVar[CutMode]
    CUT_MODE_STEP: _ClassVar[CutMode]
    CUT_MODE_EVERY_STEP: _ClassVar[CutMode]
    CUT_MODE_SEARCH: _ClassVar[CutMode]

class StepBoundary(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STEP_BOUNDARY_UNSPECIFIED: _ClassVar[StepBoundary]
    STEP_BOUNDARY_LINE: _ClassVar[StepBoundary]
    STEP_BOUNDARY_SENTENCE: _ClassVar[StepBoundary]
ANSWER_MODE_UNSPECIFIED: AnswerMode
ANSWER_MODE_FREE: AnswerMode
ANSWER_MODE_FORCE_ANSWER: AnswerMode
CUT_MODE_UNSPECIFIED: CutMode
CUT_MODE_TOKEN: CutMode
CUT_MODE_STEP: CutMode
CUT_MODE_EVERY_STEP: CutMode
CUT_MODE_SEARCH: CutMode
STEP_BOUNDARY_UNSPECIFIED: StepBoundary
STEP_BOUNDARY_LINE: StepBoundary
STEP_BOUNDARY_SENTENCE: StepBoundary

class SamplingParams(_message.Message):
    __slots__ = ("temperature", "top_p", "max_tokens", "seed")
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    top_p: float
    max_tokens: int
    seed: int
    def __init__(self, temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., max_tokens: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class StreamPrefixesRequest(_message.Message):
    __slots__ = ("problem", "fractions", "sampling", "grader")
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    FRACTIONS_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    GRADER_FIELD_NUMBER: _ClassVar[int]
    problem: str
    fractions: _containers.RepeatedScalarFieldContainer[float]
    sampling: SamplingParams
    grader: str
    def __init__(self, problem: _Optional[str] = ..., fractions: _Optional[_Iterable[float]] = ..., sampling: _Optional[_Union[SamplingParams, _Mapping]] = ..., grader: _Optional[str] = ...) -> None: ...

class StreamPrefixesResponse(_message.Message):
    __slots__ = ("delta", "prefix", "answer")
    DELTA_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    delta: CotDelta
    prefix: Prefix
    answer: StrongAnswer
    def __init__(self, delta: _Optional[_Union[CotDelta, _Mapping]] = ..., prefix: _Optional[_Union[Prefix, _Mapping]] = ..., answer: _Optional[_Union[StrongAnswer, _Mapping]] = ...) -> None: ...

class CotDelta(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class Prefix(_message.Message):
    __slots__ = ("fraction", "text", "num_tokens", "cot_num_tokens", "token_ids", "answer_in_prefix", "num_steps", "answer_stated_in_prefix")
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    NUM_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COT_NUM_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    ANSWER_IN_PREFIX_FIELD_NUMBER: _ClassVar[int]
    NUM_STEPS_FIELD_NUMBER: _ClassVar[int]
    ANSWER_STATED_IN_PREFIX_FIELD_NUMBER: _ClassVar[int]
    fraction: float
    text: str
    num_tokens: int
    cot_num_tokens: int
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    answer_in_prefix: bool
    num_steps: int
    answer_stated_in_prefix: bool
    def __init__(self, fraction: _Optional[float] = ..., text: _Optional[str] = ..., num_tokens: _Optional[int] = ..., cot_num_tokens: _Optional[int] = ..., token_ids: _Optional[_Iterable[int]] = ..., answer_in_prefix: _Optional[bool] = ..., num_steps: _Optional[int] = ..., answer_stated_in_prefix: _Optional[bool] = ...) -> None: ...

class StrongAnswer(_message.Message):
    __slots__ = ("cot", "answer", "cot_num_tokens", "finish_reason", "final_text", "reasoning_truncated")
    COT_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    COT_NUM_TOKENS_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    FINAL_TEXT_FIELD_NUMBER: _ClassVar[int]
    REASONING_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    cot: str
    answer: str
    cot_num_tokens: int
    finish_reason: str
    final_text: str
    reasoning_truncated: bool
    def __init__(self, cot: _Optional[str] = ..., answer: _Optional[str] = ..., cot_num_tokens: _Optional[int] = ..., finish_reason: _Optional[str] = ..., final_text: _Optional[str] = ..., reasoning_truncated: _Optional[bool] = ...) -> None: ...

class CompleteRequest(_message.Message):
    __slots__ = ("problem", "prefix", "n", "sampling", "reference_answer", "grader", "prefix_token_ids", "receiver", "mode")
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ANSWER_FIELD_NUMBER: _ClassVar[int]
    GRADER_FIELD_NUMBER: _ClassVar[int]
    PREFIX_TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    problem: str
    prefix: str
    n: int
    sampling: SamplingParams
    reference_answer: str
    grader: str
    prefix_token_ids: _containers.RepeatedScalarFieldContainer[int]
    receiver: str
    mode: AnswerMode
    def __init__(self, problem: _Optional[str] = ..., prefix: _Optional[str] = ..., n: _Optional[int] = ..., sampling: _Optional[_Union[SamplingParams, _Mapping]] = ..., reference_answer: _Optional[str] = ..., grader: _Optional[str] = ..., prefix_token_ids: _Optional[_Iterable[int]] = ..., receiver: _Optional[str] = ..., mode: _Optional[_Union[AnswerMode, str]] = ...) -> None: ...

class Completion(_message.Message):
    __slots__ = ("text", "extracted_answer", "correct", "num_tokens", "finish_reason")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    EXTRACTED_ANSWER_FIELD_NUMBER: _ClassVar[int]
    CORRECT_FIELD_NUMBER: _ClassVar[int]
    NUM_TOKENS_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    text: str
    extracted_answer: str
    correct: bool
    num_tokens: int
    finish_reason: str
    def __init__(self, text: _Optional[str] = ..., extracted_answer: _Optional[str] = ..., correct: _Optional[bool] = ..., num_tokens: _Optional[int] = ..., finish_reason: _Optional[str] = ...) -> None: ...

class CompleteResponse(_message.Message):
    __slots__ = ("completions", "num_correct", "potential", "prompt_num_tokens")
    COMPLETIONS_FIELD_NUMBER: _ClassVar[int]
    NUM_CORRECT_FIELD_NUMBER: _ClassVar[int]
    POTENTIAL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_NUM_TOKENS_FIELD_NUMBER: _ClassVar[int]
    completions: _containers.RepeatedCompositeFieldContainer[Completion]
    num_correct: int
    potential: float
    prompt_num_tokens: int
    def __init__(self, completions: _Optional[_Iterable[_Union[Completion, _Mapping]]] = ..., num_correct: _Optional[int] = ..., potential: _Optional[float] = ..., prompt_num_tokens: _Optional[int] = ...) -> None: ...

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetInfoResponse(_message.Message):
    __slots__ = ("strong_model", "weak_model", "graders", "default_grader", "max_samples_per_request", "max_problems_per_run", "max_fractions", "max_message_bytes", "models", "max_text_chars", "strong_sampling_defaults", "weak_sampling_defaults", "versions", "max_samples_per_run")
    class VersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STRONG_MODEL_FIELD_NUMBER: _ClassVar[int]
    WEAK_MODEL_FIELD_NUMBER: _ClassVar[int]
    GRADERS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_GRADER_FIELD_NUMBER: _ClassVar[int]
    MAX_SAMPLES_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    MAX_PROBLEMS_PER_RUN_FIELD_NUMBER: _ClassVar[int]
    MAX_FRACTIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    MAX_TEXT_CHARS_FIELD_NUMBER: _ClassVar[int]
    STRONG_SAMPLING_DEFAULTS_FIELD_NUMBER: _ClassVar[int]
    WEAK_SAMPLING_DEFAULTS_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_SAMPLES_PER_RUN_FIELD_NUMBER: _ClassVar[int]
    strong_model: str
    weak_model: str
    graders: _containers.RepeatedScalarFieldContainer[str]
    default_grader: str
    max_samples_per_request: int
    max_problems_per_run: int
    max_fractions: int
    max_message_bytes: int
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    max_text_chars: int
    strong_sampling_defaults: SamplingParams
    weak_sampling_defaults: SamplingParams
    versions: _containers.ScalarMap[str, str]
    max_samples_per_run: int
    def __init__(self, strong_model: _Optional[str] = ..., weak_model: _Optional[str] = ..., graders: _Optional[_Iterable[str]] = ..., default_grader: _Optional[str] = ..., max_samples_per_request: _Optional[int] = ..., max_problems_per_run: _Optional[int] = ..., max_fractions: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., max_text_chars: _Optional[int] = ..., strong_sampling_defaults: _Optional[_Union[SamplingParams, _Mapping]] = ..., weak_sampling_defaults: _Optional[_Union[SamplingParams, _Mapping]] = ..., versions: _Optional[_Mapping[str, str]] = ..., max_samples_per_run: _Optional[int] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "roles", "reasoning_format", "fingerprint", "max_model_len", "engine_settings")
    class EngineSettingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    REASONING_FORMAT_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    MAX_MODEL_LEN_FIELD_NUMBER: _ClassVar[int]
    ENGINE_SETTINGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    reasoning_format: str
    fingerprint: str
    max_model_len: int
    engine_settings: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., reasoning_format: _Optional[str] = ..., fingerprint: _Optional[str] = ..., max_model_len: _Optional[int] = ..., engine_settings: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Problem(_message.Message):
    __slots__ = ("id", "problem", "answer", "cot", "cot_format", "prefixes", "rows")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    COT_FIELD_NUMBER: _ClassVar[int]
    COT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    PREFIXES_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    id: str
    problem: str
    answer: str
    cot: str
    cot_format: str
    prefixes: _containers.RepeatedCompositeFieldContainer[Prefix]
    rows: _containers.RepeatedCompositeFieldContainer[RowKey]
    def __init__(self, id: _Optional[str] = ..., problem: _Optional[str] = ..., answer: _Optional[str] = ..., cot: _Optional[str] = ..., cot_format: _Optional[str] = ..., prefixes: _Optional[_Iterable[_Union[Prefix, _Mapping]]] = ..., rows: _Optional[_Iterable[_Union[RowKey, _Mapping]]] = ...) -> None: ...

class RowKey(_message.Message):
    __slots__ = ("fraction", "receiver", "mode")
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    fraction: float
    receiver: str
    mode: AnswerMode
    def __init__(self, fraction: _Optional[float] = ..., receiver: _Optional[str] = ..., mode: _Optional[_Union[AnswerMode, str]] = ...) -> None: ...

class SamplingPlan(_message.Message):
    __slots__ = ("n_max", "rounds", "error_rate", "target_width", "rule")
    N_MAX_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    TARGET_WIDTH_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    n_max: int
    rounds: _containers.RepeatedScalarFieldContainer[int]
    error_rate: float
    target_width: float
    rule: str
    def __init__(self, n_max: _Optional[int] = ..., rounds: _Optional[_Iterable[int]] = ..., error_rate: _Optional[float] = ..., target_width: _Optional[float] = ..., rule: _Optional[str] = ...) -> None: ...

class AnswerCount(_message.Message):
    __slots__ = ("answer", "count")
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    answer: str
    count: int
    def __init__(self, answer: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class Thresholds(_message.Message):
    __slots__ = ("baseline_max_potential", "unlock_min_potential")
    BASELINE_MAX_POTENTIAL_FIELD_NUMBER: _ClassVar[int]
    UNLOCK_MIN_POTENTIAL_FIELD_NUMBER: _ClassVar[int]
    baseline_max_potential: float
    unlock_min_potential: float
    def __init__(self, baseline_max_potential: _Optional[float] = ..., unlock_min_potential: _Optional[float] = ...) -> None: ...

class RunRequest(_message.Message):
    __slots__ = ("problems", "fractions", "n", "strong_sampling", "weak_sampling", "thresholds", "grader", "experiment_id", "sampling_plan", "receivers", "modes", "cut", "step_boundary", "keep_completions", "cot_tokenizer", "take_over")
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    FRACTIONS_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    STRONG_SAMPLING_FIELD_NUMBER: _ClassVar[int]
    WEAK_SAMPLING_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    GRADER_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_PLAN_FIELD_NUMBER: _ClassVar[int]
    RECEIVERS_FIELD_NUMBER: _ClassVar[int]
    MODES_FIELD_NUMBER: _ClassVar[int]
    CUT_FIELD_NUMBER: _ClassVar[int]
    STEP_BOUNDARY_FIELD_NUMBER: _ClassVar[int]
    KEEP_COMPLETIONS_FIELD_NUMBER: _ClassVar[int]
    COT_TOKENIZER_FIELD_NUMBER: _ClassVar[int]
    TAKE_OVER_FIELD_NUMBER: _ClassVar[int]
    problems: _containers.RepeatedCompositeFieldContainer[Problem]
    fractions: _containers.RepeatedScalarFieldContainer[float]
    n: int
    strong_sampling: SamplingParams
    weak_sampling: SamplingParams
    thresholds: Thresholds
    grader: str
    experiment_id: str
    sampling_plan: SamplingPlan
    receivers: _containers.RepeatedScalarFieldContainer[str]
    modes: _containers.RepeatedScalarFieldContainer[AnswerMode]
    cut: CutMode
    step_boundary: StepBoundary
    keep_completions: bool
    cot_tokenizer: str
    take_over: bool
    def __init__(self, problems: _Optional[_Iterable[_Union[Problem, _Mapping]]] = ..., fractions: _Optional[_Iterable[float]] = ..., n: _Optional[int] = ..., strong_sampling: _Optional[_Union[SamplingParams, _Mapping]] = ..., weak_sampling: _Optional[_Union[SamplingParams, _Mapping]] = ..., thresholds: _Optional[_Union[Thresholds, _Mapping]] = ..., grader: _Optional[str] = ..., experiment_id: _Optional[str] = ..., sampling_plan: _Optional[_Union[SamplingPlan, _Mapping]] = ..., receivers: _Optional[_Iterable[str]] = ..., modes: _Optional[_Iterable[_Union[AnswerMode, str]]] = ..., cut: _Optional[_Union[CutMode, str]] = ..., step_boundary: _Optional[_Union[StepBoundary, str]] = ..., keep_completions: _Optional[bool] = ..., cot_tokenizer: _Optional[str] = ..., take_over: _Optional[bool] = ...) -> None: ...

class StrongCot(_message.Message):
    __slots__ = ("problem_id", "cot", "answer", "correct", "cot_num_tokens", "prefixes", "final_text", "finish_reason", "reasoning_truncated", "imported")
    PROBLEM_ID_FIELD_NUMBER: _ClassVar[int]
    COT_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    CORRECT_FIELD_NUMBER: _ClassVar[int]
    COT_NUM_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PREFIXES_FIELD_NUMBER: _ClassVar[int]
    FINAL_TEXT_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    REASONING_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    IMPORTED_FIELD_NUMBER: _ClassVar[int]
    problem_id: str
    cot: str
    answer: str
    correct: bool
    cot_num_tokens: int
    prefixes: _containers.RepeatedCompositeFieldContainer[Prefix]
    final_text: str
    finish_reason: str
    reasoning_truncated: bool
    imported: bool
    def __init__(self, problem_id: _Optional[str] = ..., cot: _Optional[str] = ..., answer: _Optional[str] = ..., correct: _Optional[bool] = ..., cot_num_tokens: _Optional[int] = ..., prefixes: _Optional[_Iterable[_Union[Prefix, _Mapping]]] = ..., final_text: _Optional[str] = ..., finish_reason: _Optional[str] = ..., reasoning_truncated: _Optional[bool] = ..., imported: _Optional[bool] = ...) -> None: ...

class FractionResult(_message.Message):
    __slots__ = ("problem_id", "fraction", "prefix_num_tokens", "cot_num_tokens", "n", "num_correct", "potential", "answer_in_prefix", "receiver", "mode", "answer_counts", "completions", "rounds", "stop_reason", "num_steps", "answer_stated_in_prefix")
    PROBLEM_ID_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    PREFIX_NUM_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COT_NUM_TOKENS_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    NUM_CORRECT_FIELD_NUMBER: _ClassVar[int]
    POTENTIAL_FIELD_NUMBER: _ClassVar[int]
    ANSWER_IN_PREFIX_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    ANSWER_COUNTS_FIELD_NUMBER: _ClassVar[int]
    COMPLETIONS_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    STOP_REASON_FIELD_NUMBER: _ClassVar[int]
    NUM_STEPS_FIELD_NUMBER: _ClassVar[int]
    ANSWER_STATED_IN_PREFIX_FIELD_NUMBER: _ClassVar[int]
    problem_id: str
    fraction: float
    prefix_num_tokens: int
    cot_num_tokens: int
    n: int
    num_correct: int
    potential: float
    answer_in_prefix: bool
    receiver: str
    mode: AnswerMode
    answer_counts: _containers.RepeatedCompositeFieldContainer[AnswerCount]
    completions: _containers.RepeatedCompositeFieldContainer[Completion]
    rounds: int
    stop_reason: str
    num_steps: int
    answer_stated_in_prefix: bool
    def __init__(self, problem_id: _Optional[str] = ..., fraction: _Optional[float] = ..., prefix_num_tokens: _Optional[int] = ..., cot_num_tokens: _Optional[int] = ..., n: _Optional[int] = ..., num_correct: _Optional[int] = ..., potential: _Optional[float] = ..., answer_in_prefix: _Optional[bool] = ..., receiver: _Optional[str] = ..., mode: _Optional[_Union[AnswerMode, str]] = ..., answer_counts: _Optional[_Iterable[_Union[AnswerCount, _Mapping]]] = ..., completions: _Optional[_Iterable[_Union[Completion, _Mapping]]] = ..., rounds: _Optional[int] = ..., stop_reason: _Optional[str] = ..., num_steps: _Optional[int] = ..., answer_stated_in_prefix: _Optional[bool] = ...) -> None: ...

class Interval(_message.Message):
    __slots__ = ("low", "high")
    LOW_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    low: float
    high: float
    def __init__(self, low: _Optional[float] = ..., high: _Optional[float] = ...) -> None: ...

class FractionSummary(_message.Message):
    __slots__ = ("fraction", "weak_potential_mean", "unlocked", "unlock_rate", "unlock_rate_interval", "unsolved_evaluated", "answer_in_prefix", "unlock_rate_without_answer", "unlock_rate_without_answer_interval")
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    WEAK_POTENTIAL_MEAN_FIELD_NUMBER: _ClassVar[int]
    UNLOCKED_FIELD_NUMBER: _ClassVar[int]
    UNLOCK_RATE_FIELD_NUMBER: _ClassVar[int]
    UNLOCK_RATE_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    UNSOLVED_EVALUATED_FIELD_NUMBER: _ClassVar[int]
    ANSWER_IN_PREFIX_FIELD_NUMBER: _ClassVar[int]
    UNLOCK_RATE_WITHOUT_ANSWER_FIELD_NUMBER: _ClassVar[int]
    UNLOCK_RATE_WITHOUT_ANSWER_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    fraction: float
    weak_potential_mean: float
    unlocked: int
    unlock_rate: float
    unlock_rate_interval: Interval
    unsolved_evaluated: int
    answer_in_prefix: int
    unlock_rate_without_answer: float
    unlock_rate_without_answer_interval: Interval
    def __init__(self, fraction: _Optional[float] = ..., weak_potential_mean: _Optional[float] = ..., unlocked: _Optional[int] = ..., unlock_rate: _Optional[float] = ..., unlock_rate_interval: _Optional[_Union[Interval, _Mapping]] = ..., unsolved_evaluated: _Optional[int] = ..., answer_in_prefix: _Optional[int] = ..., unlock_rate_without_answer: _Optional[float] = ..., unlock_rate_without_answer_interval: _Optional[_Union[Interval, _Mapping]] = ...) -> None: ...

class RunSummary(_message.Message):
    __slots__ = ("fractions", "n_samples", "n_problems", "baseline_unsolved", "per_fraction", "strong_solve_rate", "thresholds", "truncated_cots", "problem_errors", "receivers", "samples_drawn", "samples_brute_force")
    FRACTIONS_FIELD_NUMBER: _ClassVar[int]
    N_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    N_PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    BASELINE_UNSOLVED_FIELD_NUMBER: _ClassVar[int]
    PER_FRACTION_FIELD_NUMBER: _ClassVar[int]
    STRONG_SOLVE_RATE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_COTS_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_ERRORS_FIELD_NUMBER: _ClassVar[int]
    RECEIVERS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_DRAWN_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_BRUTE_FORCE_FIELD_NUMBER: _ClassVar[int]
    fractions: _containers.RepeatedScalarFieldContainer[float]
    n_samples: int
    n_problems: int
    baseline_unsolved: int
    per_fraction: _containers.RepeatedCompositeFieldContainer[FractionSummary]
    strong_solve_rate: float
    thresholds: Thresholds
    truncated_cots: int
    problem_errors: int
    receivers: _containers.RepeatedCompositeFieldContainer[ReceiverSummary]
    samples_drawn: int
    samples_brute_force: int
    def __init__(self, fractions: _Optional[_Iterable[float]] = ..., n_samples: _Optional[int] = ..., n_problems: _Optional[int] = ..., baseline_unsolved: _Optional[int] = ..., per_fraction: _Optional[_Iterable[_Union[FractionSummary, _Mapping]]] = ..., strong_solve_rate: _Optional[float] = ..., thresholds: _Optional[_Union[Thresholds, _Mapping]] = ..., truncated_cots: _Optional[int] = ..., problem_errors: _Optional[int] = ..., receivers: _Optional[_Iterable[_Union[ReceiverSummary, _Mapping]]] = ..., samples_drawn: _Optional[int] = ..., samples_brute_force: _Optional[int] = ...) -> None: ...

class ReceiverSummary(_message.Message):
    __slots__ = ("receiver", "mode", "baseline_unsolved", "per_fraction")
    RECEIVER_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_UNSOLVED_FIELD_NUMBER: _ClassVar[int]
    PER_FRACTION_FIELD_NUMBER: _ClassVar[int]
    receiver: str
    mode: AnswerMode
    baseline_unsolved: int
    per_fraction: _containers.RepeatedCompositeFieldContainer[FractionSummary]
    def __init__(self, receiver: _Optional[str] = ..., mode: _Optional[_Union[AnswerMode, str]] = ..., baseline_unsolved: _Optional[int] = ..., per_fraction: _Optional[_Iterable[_Union[FractionSummary, _Mapping]]] = ...) -> None: ...

class ProblemError(_message.Message):
    __slots__ = ("problem_id", "code", "message", "permanent")
    PROBLEM_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PERMANENT_FIELD_NUMBER: _ClassVar[int]
    problem_id: str
    code: str
    message: str
    permanent: bool
    def __init__(self, problem_id: _Optional[str] = ..., code: _Optional[str] = ..., message: _Optional[str] = ..., permanent: _Optional[bool] = ...) -> None: ...

class RunResponse(_message.Message):
    __slots__ = ("strong_cot", "result", "summary", "problem_error")
    STRONG_COT_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_ERROR_FIELD_NUMBER: _ClassVar[int]
    strong_cot: StrongCot
    result: FractionResult
    summary: RunSummary
    problem_error: ProblemError
    def __init__(self, strong_cot: _Optional[_Union[StrongCot, _Mapping]] = ..., result: _Optional[_Union[FractionResult, _Mapping]] = ..., summary: _Optional[_Union[RunSummary, _Mapping]] = ..., problem_error: _Optional[_Union[ProblemError, _Mapping]] = ...) -> None: ...
