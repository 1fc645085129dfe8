"""Signatures: inference from dataset versions and frames, JSON, differences, enforcement."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import shipyard.data as data
from shipyard.data.schema import LogicalType
from shipyard.errors import InvalidInput
from shipyard.project import Project
from shipyard.registry.signature import (
    CheckedInput,
    ColumnSpec,
    Signature,
    SignatureError,
    enforce,
    infer_signature,
)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    created = Project.init(tmp_path / ".shipyard")
    yield created
    created.close()


def _training() -> pd.DataFrame:
    rows = 40
    return pd.DataFrame(
        {
            "age": pd.array([None if i % 10 == 3 else 20 + i for i in range(rows)], dtype="Int64"),
            "visits": np.arange(rows, dtype=np.int64) % 7,
            "income": np.linspace(1_000.0, 5_000.0, rows),
            "plan": [("basic", "pro", "team")[i % 3] for i in range(rows)],
            "region": pd.Categorical([("north", "south")[i % 2] for i in range(rows)]),
            "active": [i % 4 != 0 for i in range(rows)],
            "signup": pd.date_range("2024-01-01", periods=rows, freq="D"),
            "churned": [i % 2 for i in range(rows)],
        }
    )


@pytest.fixture
def signature() -> Signature:
    return infer_signature(_training(), target="churned")


def _row(**changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "age": 30,
        "visits": 3,
        "income": 2_000.5,
        "plan": "pro",
        "region": "north",
        "active": True,
        "signup": "2024-01-15T08:30:00",
    }
    row.update(changes)
    return row


def _error(signature: Signature, payload: object, **kwargs: str) -> str:
    with pytest.raises(SignatureError) as caught:
        enforce(signature, payload, **kwargs)
    return str(caught.value)


# -- inference ---------------------------------------------------------------------------------


def test_inference_from_a_dataset_version_equals_inference_from_its_frame(
    project: Project,
) -> None:
    frame = _training()
    version = data.add(frame, "customers", project=project)
    from_version = infer_signature(version, target="churned")
    assert from_version == infer_signature(frame, target="churned")
    assert from_version == infer_signature(pa.Table.from_pandas(frame), target="churned")


def test_inferred_columns_carry_types_nulls_levels_and_ranges(signature: Signature) -> None:
    specs = {spec.name: spec for spec in signature.inputs}
    assert signature.kind == "table"
    assert signature.input_names == [
        "age", "visits", "income", "plan", "region", "active", "signup"
    ]  # fmt: skip
    assert specs["age"] == ColumnSpec("age", LogicalType.INTEGER, True, None, 20.0, 59.0)
    assert (specs["visits"].nullable, specs["visits"].minimum, specs["visits"].maximum) == (
        False,
        0.0,
        6.0,
    )
    assert specs["income"].type is LogicalType.FLOAT
    assert specs["plan"].type is LogicalType.CATEGORY
    assert specs["plan"].levels == ("basic", "pro", "team")
    assert specs["plan"].dtype is None  # plain text in training
    assert (specs["region"].levels, specs["region"].dtype) == (("north", "south"), "category")
    assert specs["active"].type is LogicalType.BOOLEAN
    assert specs["signup"].type is LogicalType.DATETIME
    assert specs["signup"].minimum is None  # no ranges for time: it moves on
    assert signature.outputs == (ColumnSpec("churned", LogicalType.INTEGER, False, None, 0.0, 1.0),)


def test_predictions_give_the_outputs() -> None:
    frame = _training()
    labels = frame["churned"].to_numpy()
    named = infer_signature(frame, target="churned", predictions=labels * 1.5)
    assert "churned" not in named.input_names
    assert named.outputs == (ColumnSpec("churned", LogicalType.FLOAT, False, None, 0.0, 1.5),)

    scores = pd.DataFrame({"p_yes": np.full(40, 0.25), "label": ["yes"] * 40})
    both = infer_signature(frame.drop(columns="churned"), predictions=scores)
    assert both.output_names == ["p_yes", "label"]
    assert both.outputs[1].type is LogicalType.CATEGORY

    probabilities = np.full((40, 2), 0.5, dtype=np.float32)
    tensor = infer_signature(frame, target="churned", predictions=probabilities)
    assert tensor.outputs[0].shape == (-1, 2)
    assert tensor.outputs[0].dtype == "float32"


def test_a_target_or_predictions_that_do_not_fit_the_data_are_clear_errors() -> None:
    frame = _training()
    with pytest.raises(
        InvalidInput, match=r"target column 'churn' is not in .*did you mean churned"
    ):
        infer_signature(frame, target="churn")
    with pytest.raises(InvalidInput, match="predictions have 3 rows but the data has 40"):
        infer_signature(frame, target="churned", predictions=[1, 0, 1])
    with pytest.raises(InvalidInput, match="arrays have no columns"):
        infer_signature(np.zeros((3, 2)), target="y")
    with pytest.raises(InvalidInput, match="cannot infer a signature from a str"):
        infer_signature("train.csv")  # type: ignore[arg-type]


def test_arrays_give_a_tensor_signature() -> None:
    images = np.random.default_rng(0).random((5, 4, 3)).astype(np.float32)
    signature = infer_signature(images)
    (spec,) = signature.inputs
    assert signature.kind == "tensor"
    assert (spec.name, spec.shape, spec.dtype, spec.type) == (
        "input",
        (-1, 4, 3),
        "float32",
        LogicalType.FLOAT,
    )
    named = infer_signature({"ids": np.arange(6).reshape(3, 2), "mask": np.ones(3, dtype=bool)})
    assert [(s.name, s.shape, s.dtype) for s in named.inputs] == [
        ("ids", (-1, 2), "int64"),
        ("mask", (-1,), "bool"),
    ]
    assert (named.inputs[0].minimum, named.inputs[0].maximum) == (0.0, 5.0)


# -- storage and comparison --------------------------------------------------------------------


def test_json_round_trip(signature: Signature) -> None:
    stored = json.loads(json.dumps(signature.to_json()))
    assert Signature.from_json(stored) == signature
    tensor = infer_signature({"x": np.zeros((2, 3), dtype=np.float32)}, predictions=np.zeros(2))
    assert Signature.from_json(json.loads(json.dumps(tensor.to_json()))) == tensor
    # Absent optional fields stay out of the stored form.
    assert "levels" not in stored["inputs"][0] and stored["inputs"][3]["levels"] == [
        "basic",
        "pro",
        "team",
    ]


def test_a_stored_signature_tolerates_absent_outputs_and_extra_keys() -> None:
    # The form an imported MLflow signature takes: no outputs, keys shipyard does not use.
    stored = {
        "kind": "table",
        "inputs": [{"name": "x", "type": "float", "nullable": True, "required": True}],
        "outputs": None,
    }
    signature = Signature.from_json(stored)
    assert signature == Signature((ColumnSpec("x", LogicalType.FLOAT, True),))
    assert enforce(signature, {"x": [1, None]}).frame["x"].isna().tolist() == [False, True]


def test_a_malformed_stored_signature_says_what_to_do() -> None:
    with pytest.raises(InvalidInput, match=r"stored signature is malformed.*infer it again"):
        Signature.from_json({"inputs": [{"name": "x", "type": "nonsense", "nullable": False}]})
    with pytest.raises(InvalidInput, match="repeats the input name"):
        Signature((ColumnSpec("a", LogicalType.FLOAT, False),) * 2)


def test_describe_differences(signature: Signature) -> None:
    assert signature.describe_differences(signature) == []
    frame = _training().drop(columns=["visits"])
    frame["income"] = frame["income"] * 2
    frame["plan"] = [("basic", "pro", "enterprise")[i % 3] for i in range(len(frame))]
    frame["age"] = frame["age"].fillna(30).astype("float64")
    frame["tenure"] = 1.0
    frame["churned"] = frame["churned"].astype(bool)
    changed = infer_signature(frame, target="churned")
    lines = signature.describe_differences(changed)
    assert "input 'visits' removed" in lines
    assert "input 'tenure' added (float, range [1, 1])" in lines
    assert "input 'age': type integer -> float" in lines
    assert "input 'age': no longer nullable" in lines
    assert "input 'plan': new levels 'enterprise'" in lines
    assert "input 'plan': levels gone 'team'" in lines
    assert "input 'income': range [1000, 5000] -> [2000, 10000]" in lines
    assert "output 'churned': type integer -> boolean" in lines


# -- enforcement: columns and types ------------------------------------------------------------


def test_a_valid_row_comes_back_in_the_training_dtypes(signature: Signature) -> None:
    checked = enforce(signature, [_row(age=None)])
    assert isinstance(checked, CheckedInput)
    assert checked.rows == 1 and checked.out_of_range == {}
    frame = checked.frame
    assert list(frame.columns) == signature.input_names
    assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == {
        "age": "Int64",
        "visits": "int64",
        "income": "float64",
        "plan": "object",
        "region": "category",
        "active": "bool",
        "signup": "datetime64[us]",
    }
    assert frame["age"].isna().tolist() == [True]
    assert list(frame["region"].cat.categories) == ["north", "south"]
    assert frame["signup"][0] == pd.Timestamp("2024-01-15 08:30")
    assert checked.model_input is frame


def test_missing_column_is_named_and_extras_are_dropped(signature: Signature) -> None:
    row = _row()
    del row["plan"]
    row["Plan"] = "pro"
    message = _error(signature, [row])
    assert "lacks the column(s) 'plan'" in message
    assert "expected the columns age, visits, income, plan, region, active, signup" in message
    assert "did you send 'Plan' for 'plan'?" in message

    checked = enforce(signature, [_row(request_id="r-1")])
    assert checked.ignored_columns == ("request_id",)
    assert "request_id" not in checked.frame.columns


def test_integers_widen_to_floats_and_whole_floats_pass_for_integers(
    signature: Signature,
) -> None:
    checked = enforce(signature, [_row(income=2000, visits=3.0)])
    assert checked.frame["income"].tolist() == [2000.0]
    assert checked.frame["visits"].tolist() == [3]
    assert checked.frame["visits"].dtype == np.int64


def test_lossy_or_wrong_types_are_refused(signature: Signature) -> None:
    message = _error(signature, [_row(visits=2.5)])
    assert "column 'visits' expects whole numbers (integer); received 2.5 (float) in row 0" in (
        message
    )
    message = _error(signature, [_row(income="2000")])
    assert "column 'income' expects numbers (float); received '2000' (str)" in message
    assert "send numbers, not text" in message
    message = _error(signature, [_row(visits=True)])
    assert "column 'visits' expects whole numbers (integer); received True (bool)" in message
    message = _error(signature, [_row(active=1)])
    assert "column 'active' expects true or false (boolean); received 1 (int)" in message
    message = _error(signature, [_row(plan=3)])
    assert "column 'plan' expects text (category); received 3 (int)" in message


def test_every_broken_column_is_reported_at_once(signature: Signature) -> None:
    with pytest.raises(SignatureError) as caught:
        enforce(signature, [_row(visits="x", income=None, plan="gold")])
    problems = caught.value.problems
    assert len(problems) == 3
    assert str(caught.value).startswith("3 problems with the input: column 'visits'")


def test_datetimes_take_iso_text_but_not_numbers(signature: Signature) -> None:
    checked = enforce(signature, {"signup": ["2024-02-01", "2024-02-01T10:00:00"], **{
        name: [value, value] for name, value in _row().items() if name != "signup"
    }})  # fmt: skip
    assert checked.frame["signup"].tolist() == [
        pd.Timestamp("2024-02-01"),
        pd.Timestamp("2024-02-01 10:00"),
    ]
    message = _error(signature, [_row(signup="next tuesday")])
    assert "column 'signup' expects timestamps (datetime, or ISO 8601 text)" in message
    assert "'next tuesday'" in message
    assert "1706745600 (int)" in _error(signature, [_row(signup=1706745600)])


def test_dates_take_iso_dates() -> None:
    signature = infer_signature(pd.DataFrame({"day": [date(2024, 1, 1), date(2024, 1, 2)]}))
    assert signature.inputs[0].type is LogicalType.DATE
    checked = enforce(signature, {"day": ["2024-03-04", date(2024, 3, 5)]})
    assert checked.frame["day"].tolist() == [date(2024, 3, 4), date(2024, 3, 5)]
    assert "expects dates" in _error(signature, {"day": ["04/03/2024"]})


# -- enforcement: missing values, categories, ranges -------------------------------------------


def test_a_null_in_a_column_without_nulls_names_column_and_row(signature: Signature) -> None:
    message = _error(signature, [_row(), _row(income=None)])
    assert "column 'income' has a missing value in row 1" in message
    assert "had none in training" in message


def test_a_nullable_integer_column_with_a_missing_value_is_handled(signature: Signature) -> None:
    # MLflow refuses this: pandas turned the integer column into floats with NaN.
    frame = pd.DataFrame([_row(age=41), _row(age=None)])
    assert frame["age"].dtype == np.float64
    checked = enforce(signature, frame)
    assert checked.frame["age"].dtype == pd.Int64Dtype()
    assert checked.frame["age"].tolist() == [41, pd.NA]
    # The same as JSON records and as pandas' own nullable integers.
    assert enforce(signature, [_row(age=41), _row(age=None)]).frame.equals(checked.frame)
    nullable = frame.astype({"age": "Int64"})
    assert enforce(signature, nullable).frame.equals(checked.frame)


def test_an_unknown_category_is_an_error_listing_known_levels(signature: Signature) -> None:
    message = _error(signature, [_row(), _row(plan="gold")])
    assert "column 'plan' received the category 'gold' (row 1)" in message
    assert "known levels: 'basic', 'pro', 'team'" in message
    assert "'east'" in _error(signature, [_row(region="east")])


def test_out_of_range_values_are_counted_or_refused(signature: Signature) -> None:
    rows = [_row(age=90), _row(age=10, income=9_999.0), _row()]
    checked = enforce(signature, rows)
    assert checked.out_of_range == {"age": 2, "income": 1}
    assert checked.frame["age"].tolist() == [90, 10, 30]

    message = _error(signature, rows, range_policy="refuse")
    assert "column 'age' received 90, outside the training range [20, 59]" in message
    assert "2 value(s) outside" in message
    assert "column 'income' received 9999" in message
    with pytest.raises(InvalidInput, match="range policy 'loose' is unknown"):
        enforce(signature, rows, range_policy="loose")


# -- enforcement: payload shapes ---------------------------------------------------------------


def test_records_columns_scalars_frames_and_tables_give_the_same_frame(
    signature: Signature,
) -> None:
    rows = [_row(), _row(age=None, plan="team", active=False)]
    expected = enforce(signature, rows).frame
    columns = {name: [row[name] for row in rows] for name in rows[0]}
    assert enforce(signature, columns).frame.equals(expected)
    frame = pd.DataFrame(rows)
    assert enforce(signature, frame).frame.equals(expected)
    table = pa.Table.from_pandas(frame.astype({"age": "Int64"}), preserve_index=False)
    assert enforce(signature, table).frame.equals(expected)
    assert enforce(signature, _row()).frame.equals(expected.iloc[:1])


def test_a_key_absent_from_one_record_is_a_missing_value(signature: Signature) -> None:
    sparse = _row()
    del sparse["age"]
    checked = enforce(signature, [_row(), sparse])
    assert checked.frame["age"].tolist() == [30, pd.NA]


def test_malformed_payloads_are_clear_errors(signature: Signature) -> None:
    assert "record 1 is a list" in _error(signature, [_row(), [1, 2]])
    uneven = {name: [value] for name, value in _row().items()} | {"age": [1, 2]}
    assert "different lengths" in _error(signature, uneven)
    mixed = {name: value for name, value in _row().items()} | {"age": [1, 2]}
    assert "hold a single value while others hold lists" in _error(signature, mixed)
    assert "cannot read a int as model input" in _error(signature, 5)


def test_a_matrix_is_read_in_signature_order() -> None:
    signature = infer_signature(pd.DataFrame({"a": [1.0, 2.0], "b": [3, 4]}))
    checked = enforce(signature, np.array([[1.5, 3.0]]))
    assert checked.frame.to_dict("list") == {"a": [1.5], "b": [3]}
    assert "one column per input (2)" in _error(signature, np.zeros((1, 3)))


def test_the_signature_survives_pickling_after_use(signature: Signature) -> None:
    enforce(signature, [_row()])
    copy = pickle.loads(pickle.dumps(signature))
    assert copy == signature
    assert enforce(copy, [_row()]).frame.equals(enforce(signature, [_row()]).frame)


# -- tensors -----------------------------------------------------------------------------------


@pytest.fixture
def tensor_signature() -> Signature:
    pixels = np.random.default_rng(1).random((8, 2, 3)).astype(np.float32)
    return infer_signature({"pixels": pixels, "count": np.arange(8)})


def test_tensors_cast_only_without_loss(tensor_signature: Signature) -> None:
    payload = {"pixels": np.full((3, 2, 3), 0.5), "count": [1.0, 2.0, 3.0]}  # float64, lists
    checked = enforce(tensor_signature, payload)
    assert checked.tensors["pixels"].dtype == np.float32
    assert checked.tensors["count"].dtype == np.int64
    assert checked.rows == 3 and checked.model_input is checked.tensors

    bad = _error(tensor_signature, payload | {"count": [1.5, 2.0, 3.0]})
    assert "tensor 'count' expects dtype int64; received float64" in bad
    bad = _error(tensor_signature, payload | {"pixels": np.ones((3, 2, 3), dtype=bool)})
    assert "tensor 'pixels' expects dtype float32; received bool" in bad


def test_tensor_shapes_nans_and_ranges(tensor_signature: Signature) -> None:
    message = _error(tensor_signature, {"pixels": np.zeros((3, 3, 2)), "count": [1, 2, 3]})
    assert "tensor 'pixels' expects shape (-1, 2, 3) (-1: any size); received (3, 3, 2)" in message
    pixels = np.zeros((1, 2, 3))
    pixels[0, 1, 2] = np.nan
    assert "NaN at (0, 1, 2)" in _error(tensor_signature, {"pixels": pixels, "count": [1]})
    checked = enforce(tensor_signature, {"pixels": np.full((1, 2, 3), 0.5), "count": [100]})
    assert checked.out_of_range == {"count": 1}
    assert "lacks the column(s) 'count'" in _error(tensor_signature, {"pixels": pixels})


def test_a_single_tensor_takes_a_bare_array() -> None:
    signature = infer_signature(np.zeros((4, 3), dtype=np.float32))
    checked = enforce(signature, [[1, 2, 3]])
    assert checked.model_input.dtype == np.float32  # type: ignore[union-attr]
    assert checked.frame.shape == (1, 0)


def test_a_whole_float_beyond_64_bits_is_refused_not_wrapped(signature: Signature) -> None:
    # 1e20 is a whole number, but no int64 holds it: casting would give a garbage integer.
    assert "beyond 64 bits" in _error(signature, [_row(visits=1e20, income=1.5)])
    assert "beyond 64 bits" in _error(signature, [_row(visits=-1e19), _row(visits=2.0)])


def test_extra_columns_are_dropped_or_refused_as_the_caller_asks(signature: Signature) -> None:
    checked = signature.enforcer()([_row(note="vip")])
    assert checked.ignored_columns == ("note",)
    with pytest.raises(SignatureError) as caught:
        signature.enforcer()([_row(note="vip", visits="x")], refuse_extra=True)
    assert "unexpected input 'note'" in str(caught.value)  # reported with the other problems
    assert "visits" in str(caught.value)


# -- the all-float fast path -------------------------------------------------------------------


def _float_signature() -> Signature:
    training = pd.DataFrame(
        {"x": np.linspace(0.0, 1.0, 20), "y": np.linspace(-5.0, 5.0, 20), "t": [0, 1] * 10}
    )
    return infer_signature(training, target="t")


FLOAT_PAYLOADS = [
    [{"x": 0.5, "y": 1.0}],  # the served case
    [{"x": 0.5, "y": 1}, {"x": 0, "y": -2.5}],  # integers widen
    [{"x": 2.0, "y": 9.0}, {"x": -1.0, "y": 0.0}, {"x": 0.1, "y": 0.2}],  # out of range
    {"x": [0.1, 0.2], "y": [0.3, 0.4]},  # a dict of columns
    [{"x": True, "y": 1.0}],  # a boolean is not a number
    [{"x": "0.5", "y": 1.0}],  # text is not a number
    [{"x": None, "y": 1.0}],  # missing in a column that had none
    [{"x": float("nan"), "y": 1.0}],
    [{"x": 10**400, "y": 1.0}],  # beyond float range
    [{"x": np.float64(0.5), "y": 1.0}],  # a numpy scalar: the general path
]


@pytest.mark.parametrize("policy", ["flag", "refuse"])
@pytest.mark.parametrize("payload", FLOAT_PAYLOADS, ids=range(len(FLOAT_PAYLOADS)))
def test_the_all_float_fast_path_agrees_with_the_column_checks(
    payload: object, policy: str
) -> None:
    """An all-float signature checks plain JSON numbers in one numpy pass; anything else, and
    every error, goes through the per-column checks: both must give the same answer."""
    signature = _float_signature()
    fast = signature.enforcer()
    slow = signature.enforcer()
    assert fast._floats is not None
    slow._floats = None

    def outcome(enforcer: object) -> object:
        try:
            checked = enforcer(payload, range_policy=policy)  # type: ignore[operator]
        except SignatureError as error:
            return ("error", str(error))
        frame = checked.frame
        return (frame.columns.tolist(), frame.dtypes.astype(str).tolist(),
                frame.to_numpy().tolist(), checked.out_of_range, checked.rows)  # fmt: skip

    assert outcome(fast) == outcome(slow)


def test_the_fast_path_counts_out_of_range_values_per_column() -> None:
    checked = _float_signature().enforcer()(
        [{"x": 2.0, "y": 9.0}, {"x": -1.0, "y": 0.0}, {"x": 0.1, "y": 0.2}]
    )
    assert checked.out_of_range == {"x": 2, "y": 1}
    assert checked.frame["x"].tolist() == [2.0, -1.0, 0.1]
