"""Who may publish what, and which subscribers may receive it.

Run it with ``python examples/authorization.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio

from eventcore import Dispatcher, Grants, Unauthorized, acting_as


@dataclass(frozen=True)
class UserEvent:
    user_id: str


@dataclass(frozen=True)
class PasswordChanged(UserEvent):
    pass


@dataclass(frozen=True)
class ProfileViewed(UserEvent):
    pass


# Deny by default: only what is granted is allowed; a grant on a class covers subclasses.
policy = Grants(
    publish={"auth-service": [PasswordChanged], "web": [ProfileViewed]},
    receive={"security-audit": [UserEvent], "analytics": [ProfileViewed]},
)
bus = Dispatcher(policy=policy)


@bus.on(UserEvent, principal="security-audit")
async def audit(event: UserEvent) -> None:
    print(f"audit saw        {event}")


@bus.on(UserEvent, principal="analytics")  # subscribed to the base class, but may only
async def analytics(event: UserEvent) -> None:  # receive ProfileViewed
    print(f"analytics saw    {event}")


async def main() -> None:
    async with bus:
        with acting_as("auth-service"):
            await bus.publish(PasswordChanged("u1"))
        await bus.publish(ProfileViewed("u2"), principal="web")
        try:
            with acting_as("web"):
                await bus.publish(PasswordChanged("u3"))  # web may not publish this
        except Unauthorized as exc:
            print(f"refused:         {exc}")


if __name__ == "__main__":
    anyio.run(main)
