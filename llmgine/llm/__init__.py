"""The LLM layer: the engine, its commands and events, tools, conversations and providers."""

from llmgine.llm.approval import (
    ApproveToolCallCommand,
    ToolApprovalDecidedEvent,
    ToolApprovalRequestedEvent,
)
from llmgine.llm.budget import Budget, Spend
from llmgine.llm.cache import CacheStats, LLMCache
from llmgine.llm.commands import ClearConversationCommand, PromptCommand, SetSystemPromptCommand
from llmgine.llm.conversations import (
    Conversation,
    Conversations,
    ConversationStore,
    MemoryConversationStore,
    RedisConversationStore,
    SQLiteConversationStore,
)
from llmgine.llm.engine import LLMEngine
from llmgine.llm.events import (
    ConversationTrimmedEvent,
    LLMDeltaEvent,
    LLMResponseEvent,
    LLMRetryEvent,
    ToolCallEvent,
    ToolResultEvent,
)
from llmgine.llm.limits import RateLimits
from llmgine.llm.mcp import McpServer, McpServers, McpTool
from llmgine.llm.pricing import Price
from llmgine.llm.providers import (
    OfflineProvider,
    OpenAIProvider,
    Provider,
    ReplayProvider,
    ScriptedProvider,
    default_model,
    provider_for,
)
from llmgine.llm.retries import Retries
from llmgine.llm.tool_approvals import ToolApprovals
from llmgine.llm.tools import Tool, ToolRegistry, tool
from llmgine.llm.types import ChatMessage, Completion, LLMRequest, StreamChunk, ToolCall, Usage

__all__ = [
    "ApproveToolCallCommand",
    "Budget",
    "CacheStats",
    "ChatMessage",
    "ClearConversationCommand",
    "Completion",
    "Conversation",
    "ConversationStore",
    "ConversationTrimmedEvent",
    "Conversations",
    "LLMCache",
    "LLMDeltaEvent",
    "LLMEngine",
    "LLMRequest",
    "LLMResponseEvent",
    "LLMRetryEvent",
    "McpServer",
    "McpServers",
    "McpTool",
    "MemoryConversationStore",
    "OfflineProvider",
    "OpenAIProvider",
    "Price",
    "PromptCommand",
    "Provider",
    "RateLimits",
    "RedisConversationStore",
    "ReplayProvider",
    "Retries",
    "SQLiteConversationStore",
    "ScriptedProvider",
    "SetSystemPromptCommand",
    "Spend",
    "StreamChunk",
    "Tool",
    "ToolApprovalDecidedEvent",
    "ToolApprovalRequestedEvent",
    "ToolApprovals",
    "ToolCall",
    "ToolCallEvent",
    "ToolRegistry",
    "ToolResultEvent",
    "Usage",
    "default_model",
    "provider_for",
    "tool",
]
