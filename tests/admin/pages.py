"""Reading the admin's answers in tests. (A support module: no tests here.)"""


def messages_of(response) -> list[str]:
    """The messages a page shows (django.contrib.messages)."""
    return [str(m) for m in response.context["messages"]] if response.context else []
