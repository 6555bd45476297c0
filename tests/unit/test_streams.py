"""local/sam/streams.py: the template's stream event source mapping, and Lambda's delivery rules
(bisection, partial batch responses, retries, on-failure record) with a scripted function."""

from __future__ import annotations

from local.sam.streams import Delivery, Mapping, mappings
from local.stack import load_template


def _records(n: int) -> list[dict]:
    return [
        {"dynamodb": {"SequenceNumber": str(100 + i), "ApproximateCreationDateTime": 0}} for i in range(n)
    ]


def _seqs(batch: list[dict]) -> list[int]:
    return [int(r["dynamodb"]["SequenceNumber"]) for r in batch]


class Function:
    def __init__(self, answer):
        self.answer, self.calls = answer, []

    def __call__(self, name, event):
        batch = _seqs(event["Records"])
        self.calls.append(batch)
        return self.answer(batch)


def _delivery(function, **settings):
    m = Mapping("fn", "arn:fn", "table", "arn:stream", **settings)
    failures: list[dict] = []
    return Delivery(m, function, failures.append, sleep=lambda s: None), failures


def test_the_aggregators_mapping_is_read_from_the_template():
    t = load_template()
    (m,) = mappings(t)
    assert m.table == t.resources["AssignmentsTable"].physical_name
    assert (m.batch_size, m.window, m.bisect, m.max_retries, m.report_item_failures) == (
        1000,
        1.0,
        True,
        10,
        True,
    )
    assert m.starting_position == "TRIM_HORIZON"
    assert m.on_failure == t.arn(t.resources["AggregatorDeadLetterQueue"])


def test_a_function_error_bisects_until_the_poison_record_is_alone_then_gives_it_up():
    function = Function(lambda batch: (False, {"errorType": "E"}) if 105 in batch else (True, None))
    delivery, failures = _delivery(function, bisect=True, max_retries=3)
    delivery.deliver(_records(8))
    done = [b for b in function.calls if 105 not in b]
    assert sorted(s for b in done for s in b) == [100, 101, 102, 103, 104, 106, 107]  # each once
    assert [s for b in done for s in b] == [100, 101, 102, 103, 104, 106, 107]  # in stream order
    (failure,) = failures
    info = failure["DDBStreamBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == ("105", "105", 1)
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"


def test_a_partial_batch_response_retries_from_the_lowest_failure_without_halving():
    answers = iter([(True, {"batchItemFailures": [{"itemIdentifier": "106"}, {"itemIdentifier": "104"}]})])
    function = Function(lambda batch: next(answers, (True, {"batchItemFailures": []})))
    delivery, failures = _delivery(function, bisect=True, max_retries=3, report_item_failures=True)
    delivery.deliver(_records(8))
    assert function.calls == [list(range(100, 108)), [104, 105, 106, 107]] and not failures


def test_a_malformed_identifier_fails_the_whole_batch_and_responses_count_only_when_enabled():
    answers = iter([(True, {"batchItemFailures": [{"itemIdentifier": None}]})])
    function = Function(lambda batch: next(answers, (True, None)))
    delivery, _ = _delivery(function, report_item_failures=True)
    delivery.deliver(_records(3))
    assert function.calls == [[100, 101, 102], [100, 101, 102]]
    ignored = Function(lambda batch: (True, {"batchItemFailures": [{"itemIdentifier": "100"}]}))
    delivery, _ = _delivery(ignored)  # ReportBatchItemFailures not in FunctionResponseTypes: a success
    delivery.deliver(_records(3))
    assert ignored.calls == [[100, 101, 102]]


def test_a_throttled_invocation_is_retried_without_using_a_retry_attempt():
    """ "Before invocation": throttling is retried until the records expire, not counted as an attempt."""
    from local.sam.lambda_runner import Throttled

    answers = iter([Throttled("ReservedFunctionConcurrentInvocationLimitExceeded")] * 3)

    def function(name, event):
        answer = next(answers, None)
        if answer is not None:
            raise answer
        return True, None

    delivery, failures = _delivery(function, max_retries=0)
    delivery.deliver(_records(3))
    assert delivery.invocations == 4 and not failures


def test_a_throttled_batch_past_its_maximum_age_is_given_up():
    def throttled(name, event):
        from local.sam.lambda_runner import Throttled

        raise Throttled("ConcurrentInvocationLimitExceeded")

    delivery, failures = _delivery(throttled, max_record_age=60)  # records created at epoch 0
    delivery.deliver(_records(2))
    (failure,) = failures
    assert failure["DDBStreamBatchInfo"]["batchSize"] == 2
